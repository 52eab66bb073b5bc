"""Revocation with the database: revoke, hold, release, and CRLs read from the store.

Each change is one transaction holding the certificate row lock, the status change, the
removal of any pre-signed OCSP response that would now be wrong, and the audit entry. So a
revocation is either wholly applied or not at all, and the OCSP responder never serves a
stale "good" after it commits (until the pre-signer has re-signed, a request is answered
live or with tryLater).

CRL numbers are taken under a row lock on the CA (``SELECT ... FOR UPDATE``): strictly
increasing per CA across processes and nodes. The number is reserved (and audited) before
the CRL is signed; a crash in between only leaves a gap in the sequence, never a reuse.
The file is published (renamed into place) under the same lock when it is recorded, and
only if no higher-numbered CRL went to that file first: the published CRL never goes back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from sqlalchemy import and_, delete, or_, select

from unica.errors import CertificateNotFound, ConfigurationError, InputError, RevocationError
from unica.store import models as m
from unica.store.db import operators_exist

if TYPE_CHECKING:
    from cryptography import x509

    from unica.ca.crl import RevokedEntry

#: RFC 5280 5.3.1 reason names as cryptography spells them (the values of x509.ReasonFlags, but
#: removeFromCRL), keyed by a loose form: revoking needs no cryptography (a fast ``unica revoke``)
_REASON_VALUES = ("unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
                  "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise")
_REASONS = {v.lower(): v for v in _REASON_VALUES}
_HOLD = "certificateHold"

DEFAULT_CRL_VALIDITY = dt.timedelta(days=7)
DEFAULT_DELTA_VALIDITY = dt.timedelta(days=1)


def get_ca_row(session, name: str) -> m.CA:
    """The CA row named ``name`` (from :mod:`unica.store.cas`: looking a CA up loads no certificate
    code, so ``unica revoke SERIAL --ca NAME`` starts as fast as without --ca)."""
    from unica.store.cas import get_ca_row as _get

    return _get(session, name)


def reason_value(text: str | x509.ReasonFlags | None) -> str:
    """The RFC 5280 name of a revocation reason (``keyCompromise``): ``keyCompromise``,
    ``key-compromise``, ``key_compromise`` and ``x509.ReasonFlags.key_compromise`` all name it."""
    if text is None:
        return "unspecified"
    given = text
    if not isinstance(text, str):
        text = getattr(text, "value", None)  # an x509.ReasonFlags
        if not isinstance(text, str):
            raise InputError(f"unknown revocation reason {given!r}")
    key = text.strip().replace("-", "").replace("_", "").lower()
    if key == "removefromcrl":
        raise InputError("removeFromCRL is not a revocation reason; use 'unica release' to lift a hold")
    value = _REASONS.get(key)
    if value is None:
        raise InputError(f"unknown revocation reason {given!r} (one of: {', '.join(_REASON_VALUES)})")
    return value


def parse_reason(text: str | x509.ReasonFlags | None) -> x509.ReasonFlags:
    """``keyCompromise``, ``key-compromise`` and ``key_compromise`` all name the same reason."""
    from cryptography import x509

    return x509.ReasonFlags(reason_value(text))


def parse_serial(text: str | int) -> int:
    if isinstance(text, int):
        serial = text
    else:
        try:
            serial = m.serial_int(text)
        except ValueError:
            raise InputError(f"bad serial number {text!r} (hexadecimal expected)") from None
    if serial <= 0:
        raise InputError(f"bad serial number {text!r} (serial numbers are positive)")
    return serial


@dataclass(frozen=True)
class RevocationState:
    ca: str
    serial_hex: str
    status: str
    revoked_at: dt.datetime | None
    reason: str | None
    invalidity_date: dt.datetime | None
    #: for a CA certificate: the name of the subordinate CA it certifies, now marked revoked
    sub_ca: str | None = None

    def to_dict(self) -> dict:
        return {
            "ca": self.ca, "serial": self.serial_hex, "status": self.status,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "reason": self.reason,
            "invalidity_date": self.invalidity_date.isoformat() if self.invalidity_date else None,
            "sub_ca": self.sub_ca,
        }


def _find_cert(session, serial: int, ca_name: str | None, *, lock: bool) -> tuple[m.CA, m.Certificate]:
    q = select(m.Certificate, m.CA).join(m.CA, m.Certificate.ca_id == m.CA.id).where(
        m.Certificate.serial == m.serial_hex(serial))
    if ca_name is not None:
        ca = get_ca_row(session, ca_name)
        q = q.where(m.Certificate.ca_id == ca.id)
    if lock:
        q = q.with_for_update(of=m.Certificate)
    rows = session.execute(q).all()
    where = f" issued by CA {ca_name!r}" if ca_name else ""
    if not rows:
        raise CertificateNotFound(f"no certificate with serial {m.serial_hex(serial)}{where}")
    if len(rows) > 1:
        names = ", ".join(sorted(r[1].name for r in rows))
        raise CertificateNotFound(f"serial {m.serial_hex(serial)} was issued by several CAs ({names}); add --ca")
    cert, ca = rows[0]
    return ca, cert


def _state(ca: m.CA, cert: m.Certificate, sub_ca: str | None = None) -> RevocationState:
    return RevocationState(ca.name, cert.serial, cert.status, cert.revoked_at, cert.revocation_reason,
                           cert.invalidity_date, sub_ca)


def _drop_presigned(session, cert: m.Certificate) -> None:
    session.execute(delete(m.OCSPResponse).where(m.OCSPResponse.cert_id == cert.id))


# --- who may revoke (joint operation: see unica.auth) --------------------------------------


def _scope_office(is_ca: bool, profile: str | None, office: str | None) -> str | None:
    """The office whose officers may revoke, hold or release a certificate: its issuing office;
    None (an admin's) for CA-level certificates (CAs, operators, OCSP signers) and for those
    issued by an admin or before offices existed."""
    from unica.auth.operation import CA_LEVEL_PROFILES

    return None if is_ca or profile in CA_LEVEL_PROFILES else office


@contextlib.contextmanager
def _acting(store, operation, auth, operators: bool, *, office: str | None = None, per_item: bool = False):
    """:func:`unica.auth.authorized` for ``operation()`` (built only when checked) on a
    certificate of ``office`` (``per_item``: many, checked one by one with :func:`_may_act_on`);
    yields the actor, or None when no operator exists and none was given (legacy: the OS user)."""
    if auth is None and not operators:
        yield None
        return
    from unica.auth import PER_ITEM, authorized

    with authorized(store, operation(), auth, target_office=PER_ITEM if per_item else office) as actor:
        yield actor


def _may_act_on(actor, is_ca: bool, profile: str | None, office: str | None) -> bool:
    return actor is None or actor.may_act_on(_scope_office(is_ca, profile, office))


def _hold_or_revoke(reason_v: str) -> str:
    return "cert.hold" if reason_v == _HOLD else "cert.revoke"


def _subordinate_of(session, cert: m.Certificate) -> m.CA | None:
    if not cert.is_ca or cert.der is None:
        return None
    return session.execute(select(m.CA).where(m.CA.cert_der == cert.der)).scalar_one_or_none()


def _one_operation(name: str, ca_name: str, serial_hex: str, **params):
    def build():
        from unica.auth.operation import Operation

        return Operation(name, ca=ca_name, params={"serial": serial_hex, **params})
    return build


def _lookup(store, serial: int, ca: str | None) -> tuple[str, str, str | None, bool]:
    """(CA name, serial, office scope, whether operators exist) of the certificate, before the
    operator is checked: an officer may act only on their own office's certificates."""
    with store.read() as s:
        ca_row, cert = _find_cert(s, serial, ca, lock=False)
        return (ca_row.name, cert.serial, _scope_office(cert.is_ca, cert.profile, cert.office),
                operators_exist(s))


def revoke(store, serial: str | int, *, ca: str | None = None, reason: str | x509.ReasonFlags | None = None,
           invalidity_date: dt.datetime | None = None, at: dt.datetime | None = None, auth=None) -> RevocationState:
    """Revoke (or, with ``certificateHold``, suspend) a certificate.

    ``auth``: the operator acting (see :mod:`unica.auth`): once operators exist, operation
    ``cert.revoke`` (``cert.hold``) by an ra-officer of the certificate's office, or by an admin
    for a CA-level certificate (a CA's, an operator's, an OCSP signer's) or one of no office."""
    serial = parse_serial(serial)
    reason_v = reason_value(reason)
    now = at or m.utcnow()
    if invalidity_date is not None:
        if invalidity_date.tzinfo is None:
            raise InputError("the invalidity date needs a time zone (e.g. 2026-11-20T08:00:00Z)")
        if invalidity_date > now:
            raise InputError("the invalidity date cannot be in the future")
    ca_name, serial_hex, office, operators = _lookup(store, serial, ca)
    op = _one_operation(_hold_or_revoke(reason_v), ca_name, serial_hex, reason=reason_v,
                        invalidity_date=invalidity_date.isoformat() if invalidity_date else None)
    with _acting(store, op, auth, operators, office=office):
        return _revoke(store, serial, ca, reason_v, invalidity_date, now)


def _revoke(store, serial: int, ca: str | None, reason_v: str, invalidity_date, now) -> RevocationState:
    with store.write() as s:
        ca_row, cert = _find_cert(s, serial, ca, lock=True)
        if cert.status in ("pending", "failed"):
            raise RevocationError(f"certificate {cert.serial} of CA {ca_row.name!r} was never issued ({cert.status})")
        if cert.status == "revoked":
            raise RevocationError(f"certificate {cert.serial} of CA {ca_row.name!r} is already revoked "
                                  f"({cert.revocation_reason}, {cert.revoked_at:%Y-%m-%d %H:%M:%SZ})")
        hold = reason_v == _HOLD
        if hold and cert.status == "hold":
            raise RevocationError(f"certificate {cert.serial} of CA {ca_row.name!r} is already on hold")
        was = cert.status
        cert.status = "hold" if hold else "revoked"
        # a hold made final keeps its original revocation date (RFC 5280 5.3.1)
        if not (was == "hold" and cert.revoked_at is not None):
            cert.revoked_at = now
        cert.revocation_reason = reason_v
        cert.invalidity_date = invalidity_date
        cert.updated_at = now
        _drop_presigned(s, cert)
        sub = _subordinate_of(s, cert)
        if sub is not None and not hold:
            sub.status = "revoked"
        store.audit(s, "certificate.held" if hold else "certificate.revoked", ca=ca_row.name, target=cert.serial,
                    details={"reason": reason_v, "previous_status": was,
                             "invalidity_date": invalidity_date.isoformat() if invalidity_date else None,
                             "subject": cert.subject_text,
                             **({"subordinate_ca": sub.name} if sub is not None and not hold else {})})
        return _state(ca_row, cert, sub.name if sub is not None and not hold else None)


def release(store, serial: str | int, *, ca: str | None = None, auth=None) -> RevocationState:
    """Lift a certificate hold: the certificate is valid again (a delta CRL says removeFromCRL).

    ``auth``: the operator acting (operation ``cert.release``; the same scope as :func:`revoke`)."""
    serial = parse_serial(serial)
    ca_name, serial_hex, office, operators = _lookup(store, serial, ca)
    with _acting(store, _one_operation("cert.release", ca_name, serial_hex), auth, operators, office=office):
        return _release(store, serial, ca)


def _release(store, serial: int, ca: str | None) -> RevocationState:
    now = m.utcnow()
    with store.write() as s:
        ca_row, cert = _find_cert(s, serial, ca, lock=True)
        if cert.status != "hold":
            raise RevocationError(f"certificate {cert.serial} of CA {ca_row.name!r} is not on hold ({cert.status})")
        cert.status = "valid"
        cert.revoked_at = None
        cert.revocation_reason = None
        cert.invalidity_date = None
        cert.released_at = now
        cert.updated_at = now
        _drop_presigned(s, cert)
        store.audit(s, "certificate.released", ca=ca_row.name, target=cert.serial,
                    details={"subject": cert.subject_text})
        return _state(ca_row, cert)


# --- revocation at scale -----------------------------------------------------------------

#: certificates per transaction in :func:`revoke_many` and :func:`revoke_by_spki`
BULK_BATCH = 500

#: why a serial was not revoked (the ``code`` of a :class:`Refusal`)
REFUSAL_CODES = {
    "malformed": "not a serial number",
    "duplicate": "listed more than once",
    "unknown": "no such certificate",
    "wrong-ca": "issued by another CA",
    "ambiguous": "issued by several CAs; give the CA",
    "not-issued": "never issued",
    "already-revoked": "already revoked",
    "already-on-hold": "already on hold",
    "ca-certificate": "a CA certificate (revoke it on its own)",
    "other-office": "a certificate of another RA office",
}


@dataclass(frozen=True)
class Refusal:
    """One serial :func:`revoke_many` did not revoke, and why (``code``: one of REFUSAL_CODES)."""

    serial: str
    code: str
    message: str
    ca: str | None = None

    def to_dict(self) -> dict:
        return {"serial": self.serial, "ca": self.ca, "code": self.code, "message": self.message}


@dataclass
class BulkRevocation:
    """What :func:`revoke_many` / :func:`revoke_by_spki` did: the certificates revoked (CA, serial,
    previous status), the refusals, and (by SPKI) those that were revoked already."""

    reason: str
    revoked: list[tuple[str, str, str]]
    refused: list[Refusal]
    already_revoked: list[tuple[str, str]]
    batches: int = 0

    def to_dict(self) -> dict:
        return {"reason": self.reason, "revoked_count": len(self.revoked), "refused_count": len(self.refused),
                "revoked": [{"ca": ca, "serial": s, "previous_status": p} for ca, s, p in self.revoked],
                "refused": [r.to_dict() for r in self.refused],
                "already_revoked": [{"ca": ca, "serial": s} for ca, s in self.already_revoked],
                "batches": self.batches}


def _bulk_args(reason, invalidity_date, at) -> tuple[str, dt.datetime]:
    reason_v = reason_value(reason)
    now = at or m.utcnow()
    if invalidity_date is not None:
        if invalidity_date.tzinfo is None:
            raise InputError("the invalidity date needs a time zone (e.g. 2026-11-20T08:00:00Z)")
        if invalidity_date > now:
            raise InputError("the invalidity date cannot be in the future")
    return reason_v, now


def _apply_batch(store, s, rows: list, ca_names: dict, reason_v: str,
                 invalidity_date: dt.datetime | None, now: dt.datetime, refused_here: int, source: dict) -> list:
    """Revoke (or hold) ``rows`` (id, serial, ca_id, status, revoked_at) in session ``s``: one
    many-row UPDATE, one DELETE of their pre-signed OCSP responses, one audit entry. Returns the
    (CA, serial, previous status) revoked."""
    from sqlalchemy import bindparam

    from unica.store.bulk import update_many

    if not rows:
        return []
    t = m.Certificate.__table__
    hold = reason_v == _HOLD
    status = "hold" if hold else "revoked"
    params = [(status, revoked_at if (prev == "hold" and revoked_at is not None) else now, reason_v,
               invalidity_date, now, cid, prev)
              for cid, _serial, _ca_id, prev, revoked_at in rows]
    conn = s.connection()
    changed = update_many(conn, t, ("status", "revoked_at", "revocation_reason", "invalidity_date", "updated_at"),
                          ("id", "status"), params)
    if changed not in (-1, len(rows)):  # rows are locked: only a bug (or a hand-edited database) gets here
        raise RevocationError(f"{len(rows) - changed} certificate(s) of the batch changed under the lock; "
                              "nothing of this batch was revoked")
    ocsp = m.OCSPResponse.__table__
    conn.execute(delete(ocsp).where(ocsp.c.cert_id.in_(bindparam("ids", expanding=True))),
                 {"ids": [r[0] for r in rows]})
    done = [(ca_names[ca_id], serial, prev) for _cid, serial, ca_id, prev, _r in rows]
    by_ca: dict[str, list[str]] = {}
    for ca, serial, _prev in done:
        by_ca.setdefault(ca, []).append(serial)
    store.audit(s, "certificate.held_batch" if hold else "certificate.revoked_batch",
                ca=next(iter(by_ca)) if len(by_ca) == 1 else None, target=f"{len(done)} certificates",
                details={"count": len(done), "reason": reason_v,
                         "invalidity_date": invalidity_date.isoformat() if invalidity_date else None,
                         "serials": by_ca if len(by_ca) > 1 else next(iter(by_ca.values())),
                         "previously_on_hold": [serial for _ca, serial, prev in done if prev == "hold"],
                         "refused_in_batch": refused_here, **source})
    return done


def _bulk_operation(reason_v: str, ca: str | None, invalidity_date, **what):
    def build():
        from unica.auth.operation import Operation

        return Operation(_hold_or_revoke(reason_v), ca=ca, params={
            "reason": reason_v, "invalidity_date": invalidity_date.isoformat() if invalidity_date else None, **what})
    return build


def _serials_digest(serials) -> str:
    """SHA-256 over the serials as given, one a line: what an operator's card signs for a list
    (a list of millions would make a digest input of hundreds of megabytes)."""
    h = hashlib.sha256()
    for given in serials:
        h.update((given if isinstance(given, str) else str(given)).encode("utf-8", "replace") + b"\n")
    return h.hexdigest()


def _office_refusal(actor, office: str | None) -> str:
    if office is None:
        return "a CA-level certificate, or one of no RA office: an admin's"
    return f"a certificate of RA office {office}" + (f" (operator {actor.name}'s office: {actor.office})"
                                                      if actor.office else "")


def _audit_office_refusals(store, s, op_name: str, refused: list[tuple[str, str]]) -> None:
    """One ``auth.refused`` entry for the certificates of a batch the operator may not act on."""
    if refused:
        by_ca: dict[str, list[str]] = {}
        for ca_name, serial in refused:
            by_ca.setdefault(ca_name, []).append(serial)
        store.audit(s, "auth.refused", ca=next(iter(by_ca)) if len(by_ca) == 1 else None, target=op_name,
                    details={"operation": op_name, "code": "other-office", "count": len(refused),
                             "reason": "certificates of another RA office (or CA-level ones: an admin's)",
                             "serials": by_ca if len(by_ca) > 1 else next(iter(by_ca.values()))})


def _lock(q, store):
    return q.with_for_update(of=m.Certificate.__table__) if store.dialect != "sqlite" else q


def revoke_many(store, serials, *, ca: str | None = None, reason: str | x509.ReasonFlags | None = None,
                invalidity_date: dt.datetime | None = None, at: dt.datetime | None = None,
                batch_size: int = BULK_BATCH, progress=None, auth=None) -> BulkRevocation:
    """Revoke many certificates, given by serial (hex text or int), in transactions of
    ``batch_size``: each batch is looked up with one query, changed with one many-row UPDATE,
    and audited with one entry listing its serials.

    A serial that cannot be revoked -- malformed, listed twice, unknown, issued by another CA
    than ``ca``, issued by several CAs (no ``ca`` given), never issued, already revoked (or on
    hold, for a hold), or a CA certificate (revoked alone, with ``revoke``: that marks the
    subordinate CA revoked) -- is collected as a :class:`Refusal`; the rest of its batch is
    revoked. ``progress(done, refused)`` is called after each batch.

    ``auth``: the operator acting (operation ``cert.revoke`` / ``cert.hold`` over the list's
    SHA-256): once operators exist, each certificate the operator may not act on (another RA
    office's; a CA-level one, for an officer) is refused (``other-office``, audited)."""
    reason_v, now = _bulk_args(reason, invalidity_date, at)
    if batch_size < 1:
        raise InputError("the batch size must be at least 1")
    hold = reason_v == _HOLD
    if not isinstance(serials, (list, tuple)):
        serials = list(serials)
    with store.read() as s:
        ca_names = dict(s.execute(select(m.CA.id, m.CA.name)).all())
        want_id = get_ca_row(s, ca).id if ca is not None else None
        operators = operators_exist(s)
    def op():  # the list is hashed only when an operator is checked
        return _bulk_operation(reason_v, ca, invalidity_date, serials_sha256=_serials_digest(serials),
                               count=len(serials))()

    with _acting(store, op, auth, operators, per_item=True) as actor:
        return _revoke_many(store, serials, ca, reason_v, invalidity_date, now, batch_size, progress, hold, ca_names,
                            want_id, actor)


def _revoke_many(store, serials, ca, reason_v, invalidity_date, now, batch_size, progress, hold, ca_names, want_id,
                 actor) -> BulkRevocation:
    from sqlalchemy import bindparam

    c = m.Certificate.__table__
    lookup = _lock(select(c.c.id, c.c.serial, c.c.ca_id, c.c.status, c.c.revoked_at, c.c.is_ca, c.c.profile,
                          c.c.office).where(
        c.c.ca_id.in_(bindparam("cas", expanding=True)), c.c.serial.in_(bindparam("serials", expanding=True))), store)
    result = BulkRevocation(reason_v, [], [], [])
    seen: set[int] = set()

    def refuse(serial, code, ca_name=None, message=None):
        result.refused.append(Refusal(serial, code, message or REFUSAL_CODES[code], ca_name))

    def run(batch: list[tuple[str, str]]) -> None:  # [(as given, stored hex)]
        before = len(result.refused)
        with store.write() as s:
            found: dict[str, list] = {}
            for row in s.execute(lookup, {"cas": list(ca_names), "serials": [h for _, h in batch]}):
                found.setdefault(row.serial, []).append(row)
            todo, other_office = [], []
            for given, sh in batch:
                rows = found.get(sh, [])
                if want_id is not None:
                    mine = [r for r in rows if r.ca_id == want_id]
                    if not mine and rows:
                        refuse(given, "wrong-ca", None, "issued by CA " + ", ".join(
                            repr(ca_names[r.ca_id]) for r in rows) + f", not {ca!r}")
                        continue
                    rows = mine
                if not rows:
                    refuse(given, "unknown", ca)
                    continue
                if len(rows) > 1:
                    refuse(given, "ambiguous", None, "issued by CAs " + ", ".join(
                        sorted(repr(ca_names[r.ca_id]) for r in rows)) + "; give --ca")
                    continue
                r = rows[0]
                name = ca_names[r.ca_id]
                if r.status in ("pending", "failed"):
                    refuse(given, "not-issued", name, f"never issued ({r.status})")
                elif r.status == "revoked":
                    refuse(given, "already-revoked", name)
                elif hold and r.status == "hold":
                    refuse(given, "already-on-hold", name)
                elif r.is_ca:
                    refuse(given, "ca-certificate", name)
                elif not _may_act_on(actor, r.is_ca, r.profile, r.office):
                    refuse(given, "other-office", name, _office_refusal(actor, _scope_office(r.is_ca, r.profile,
                                                                                             r.office)))
                    other_office.append((name, r.serial))
                else:
                    todo.append((r.id, r.serial, r.ca_id, r.status, r.revoked_at))
            _audit_office_refusals(store, s, _hold_or_revoke(reason_v), other_office)
            result.revoked += _apply_batch(store, s, todo, ca_names, reason_v, invalidity_date, now,
                                           len(result.refused) - before, {"source": "serial list"})
        result.batches += 1
        if progress:
            progress(len(result.revoked), len(result.refused))

    batch: list[tuple[str, str]] = []
    for given in serials:
        text = given if isinstance(given, str) else str(given)
        try:
            n = parse_serial(given)
        except InputError:
            refuse(text, "malformed")
            continue
        if n in seen:
            refuse(text, "duplicate")
            continue
        seen.add(n)
        batch.append((text if isinstance(given, str) else m.serial_hex(n), m.serial_hex(n)))
        if len(batch) >= batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    return result


def parse_spki_sha256(text: str) -> str:
    """A SHA-256 of a SubjectPublicKeyInfo: 64 hex digits (colons and case tolerated)."""
    h = text.strip().lower().replace(":", "")
    if len(h) != 64 or any(ch not in "0123456789abcdef" for ch in h):
        raise InputError(f"bad SPKI SHA-256 {text!r} (64 hexadecimal digits expected)")
    return h


def count_by_spki(store, spki_sha256: str, *, ca: str | None = None) -> int:
    """How many issued, unrevoked certificates (CA certificates included) carry this key."""
    from sqlalchemy import func

    h = parse_spki_sha256(spki_sha256)
    c = m.Certificate.__table__
    with store.read() as s:
        q = select(func.count()).select_from(c).where(c.c.spki_sha256 == h, c.c.status.in_(("valid", "hold")))
        if ca is not None:
            q = q.where(c.c.ca_id == get_ca_row(s, ca).id)
        return s.execute(q).scalar()


def revoke_by_spki(store, spki_sha256: str, *, ca: str | None = None,
                   reason: str | x509.ReasonFlags | None = "keyCompromise", invalidity_date: dt.datetime | None = None,
                   at: dt.datetime | None = None, batch_size: int = BULK_BATCH, progress=None,
                   auth=None) -> BulkRevocation:
    """Revoke every issued, unrevoked certificate whose public key has this SHA-256 (of the DER
    SubjectPublicKeyInfo; the indexed ``spki_sha256`` column), of all CAs or of ``ca``: a
    compromised key. Batches of ``batch_size`` in one transaction each, audited per batch.
    CA certificates with that key are refused (revoke them alone); those revoked already are
    listed in ``already_revoked``. :class:`CertificateNotFound` if no certificate has the key.

    ``auth``: the operator acting (operation ``cert.revoke`` / ``cert.hold`` of the key): once
    operators exist, the certificates the operator may not act on are refused (``other-office``)."""
    from sqlalchemy import bindparam, func

    h = parse_spki_sha256(spki_sha256)
    reason_v, now = _bulk_args(reason, invalidity_date, at)
    if batch_size < 1:
        raise InputError("the batch size must be at least 1")
    hold = reason_v == _HOLD
    live = ("valid",) if hold else ("valid", "hold")
    c = m.Certificate.__table__
    with store.read() as s:
        ca_names = dict(s.execute(select(m.CA.id, m.CA.name)).all())
        where = [c.c.spki_sha256 == h]
        if ca is not None:
            where.append(c.c.ca_id == get_ca_row(s, ca).id)
        if not s.execute(select(func.count()).select_from(c).where(*where)).scalar():
            raise CertificateNotFound(f"no certificate with SPKI SHA-256 {h}"
                                      + (f" issued by CA {ca!r}" if ca is not None else ""))
        result = BulkRevocation(reason_v, [], [], [])
        for serial, ca_id, status in s.execute(
                select(c.c.serial, c.c.ca_id, c.c.status).where(*where, c.c.is_ca.is_(True), c.c.status.in_(live))):
            result.refused.append(Refusal(serial, "ca-certificate", REFUSAL_CODES["ca-certificate"], ca_names[ca_id]))
        result.already_revoked = [(ca_names[ca_id], serial) for serial, ca_id in s.execute(
            select(c.c.serial, c.c.ca_id).where(*where, c.c.status.in_(("revoked", "hold") if hold else ("revoked",))))]
        operators = operators_exist(s)
    # keyset pages (id > the last one seen): a row refused here stays as it was and is not met again
    lookup = _lock(select(c.c.id, c.c.serial, c.c.ca_id, c.c.status, c.c.revoked_at, c.c.profile, c.c.office)
                   .where(*where, c.c.is_ca.is_(False), c.c.status.in_(live), c.c.id > bindparam("after"))
                   .order_by(c.c.id).limit(batch_size), store)
    with _acting(store, _bulk_operation(reason_v, ca, invalidity_date, spki_sha256=h), auth, operators,
                 per_item=True) as actor:
        after = 0
        while True:
            with store.write() as s:
                rows = [tuple(r) for r in s.execute(lookup, {"after": after})]
                todo, other_office = [], []
                for r in rows:
                    if _may_act_on(actor, False, r[5], r[6]):
                        todo.append(r[:5])
                    else:
                        name = ca_names[r[2]]
                        result.refused.append(Refusal(r[1], "other-office",
                                                      _office_refusal(actor, _scope_office(False, r[5], r[6])), name))
                        other_office.append((name, r[1]))
                _audit_office_refusals(store, s, _hold_or_revoke(reason_v), other_office)
                result.revoked += _apply_batch(store, s, todo, ca_names, reason_v, invalidity_date, now,
                                               len(other_office), {"source": "spki_sha256", "spki_sha256": h})
            if not rows:
                break
            after = rows[-1][0]
            result.batches += 1
            if progress:
                progress(len(result.revoked), len(result.refused))
    return result


# --- CRLs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedCRL:
    ca: str
    number: int
    is_delta: bool
    base_number: int | None
    shard: int | None
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    size: int
    sha256: str
    path: str  # "" when not written: a higher-numbered CRL was published there first
    superseded_by: int | None = None

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["this_update"] = self.this_update.isoformat()
        d["next_update"] = self.next_update.isoformat()
        return d


def _epoch(column, dialect: str):
    """A timestamp column as whole seconds since the epoch, computed by the database."""
    from sqlalchemy import BigInteger, Integer, cast, func

    if dialect == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)


def _revoked_rows(store, ca_id: int, now: dt.datetime, since: dt.datetime | None,
                  shards: int, shard: int | None, batch: int = 50_000) -> Iterator[RevokedEntry]:
    """Stream the CRL entries of one CA (and shard) from the database, in batches.

    The hot path of million-entry CRLs: plain Core rows (no ORM objects), revocation times
    computed as epoch seconds by the database, reasons looked up in a dict."""
    from cryptography import x509

    from unica.ca.crl import RevokedEntry

    c = m.Certificate
    d = store.dialect
    cols = (c.serial, c.status, _epoch(c.revoked_at, d), c.revocation_reason, c.invalidity_date,
            _epoch(c.released_at, d))
    q = select(*cols).where(c.ca_id == ca_id, c.not_after > now)
    if since is None:
        q = q.where(c.status.in_(("revoked", "hold")))
    else:
        q = q.where(or_(and_(c.status.in_(("revoked", "hold")), c.updated_at > since),
                        and_(c.status == "valid", c.released_at > since)))
    remove = x509.ReasonFlags.remove_from_crl
    reasons = {r.value: r for r in x509.ReasonFlags}
    with store.read() as s:
        result = s.connection().execution_options(yield_per=batch).execute(q)
        for part in result.partitions(batch):
            for serial_hex, status, revoked_at, reason, inval, released_at in part:
                serial = int(serial_hex, 16)
                if shard is not None and serial % shards != shard:
                    continue
                if status == "valid":  # released from hold since the base CRL
                    yield RevokedEntry(serial, int(released_at), remove, None)
                else:
                    yield RevokedEntry(serial, int(revoked_at), reasons.get(reason) if reason else None, inval)


def crl_path(ca: str, shard: int | None, delta: bool, directory: Path) -> Path:
    name = ca + (f"-{shard}" if shard is not None else "") + ("-delta" if delta else "") + ".crl"
    return directory / name


def generate_crl(store, ca_name: str, *, key=None, delta: bool = False, shard: int | None = None,
                 out: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
                 validity: dt.timedelta | None = None, now: dt.datetime | None = None,
                 progress=None, key_loader=None, auth=None) -> list[GeneratedCRL]:
    """Generate and write the CA's CRL(s): see :func:`_generate_crl`.

    ``auth``: the operator acting (see :mod:`unica.auth`): once operators exist, operation
    ``crl.generate`` by an admin or an ra-officer, checked before the CA key is opened."""
    with store.read() as s:
        operators = operators_exist(s)

    def op():
        from unica.auth.operation import Operation

        return Operation("crl.generate", ca=ca_name, params={
            "delta": delta, "shard": shard, "validity_seconds": validity.total_seconds() if validity else None,
            "out": os.fspath(out) if out is not None else None,
            "out_dir": os.fspath(out_dir) if out_dir is not None else None})

    with _acting(store, op, auth, operators):
        return _generate_crl(store, ca_name, key=key, delta=delta, shard=shard, out=out, out_dir=out_dir,
                             validity=validity, now=now, progress=progress, key_loader=key_loader)


def _generate_crl(store, ca_name: str, *, key=None, delta: bool = False, shard: int | None = None,
                  out: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
                  validity: dt.timedelta | None = None, now: dt.datetime | None = None,
                  progress=None, key_loader=None) -> list[GeneratedCRL]:
    """Generate the CRL(s) of a CA from the database and write them (DER).

    Without ``key``, the CA key is loaded with ``key_loader(key_uri)`` (else ``load_key``) once the
    request passed its checks; a key that cannot be used (a wrong PIN or passphrase, a missing
    token) is recorded in the audit log as ``crl.refused`` and raised.

    Partitioned CAs (``crl_shards`` > 1) get one CRL per shard unless ``shard`` is given;
    each carries an Issuing Distribution Point with its shard's URL. ``delta`` makes delta
    CRLs against the latest base CRL of the same shard.
    """
    from cryptography import x509

    from unica.ca.crl import CRLIssuer, ShardScheme, build_crl

    # ``taken``: when the entries are read (kept to the microsecond in the CRL row, so the next
    # delta lists exactly what changed after this snapshot); the CRL itself says whole seconds
    taken = now or m.utcnow()
    now = taken.replace(microsecond=0)
    with store.read() as s:
        row = get_ca_row(s, ca_name)
        if row.cert_der is None:
            raise RevocationError(f"CA {ca_name!r} has no certificate yet; it cannot sign CRLs")
        ca_cert = x509.load_der_x509_certificate(row.cert_der)
        shards = row.crl_shards or 1
        crl_url, delta_url, key_uri = row.crl_url, row.delta_crl_url, row.key_uri
        settings = dict(row.settings or {})
    if shard is not None and not 0 <= shard < shards:
        raise InputError(f"CA {ca_name!r} has {shards} CRL shard(s); shard {shard} does not exist")
    scheme = None
    if shards > 1:
        if not crl_url or "{shard}" not in crl_url:
            raise ConfigurationError(f"CA {ca_name!r} has {shards} CRL shards but its CRL URL has no {{shard}}")
        scheme = ShardScheme(shards, crl_url)
    wanted = [shard] if shard is not None else (list(range(shards)) if shards > 1 else [None])
    if out is not None and len(wanted) > 1:
        raise InputError(f"CA {ca_name!r} has {shards} CRL shards: use --out-dir, or --shard N with --out")
    if key is None:
        from unica.errors import StoreError, UnicaError
        from unica.hsm import load_key

        try:
            key = key_loader(key_uri) if key_loader is not None else load_key(key_uri)
        except UnicaError as e:
            if not isinstance(e, StoreError):
                with store.write() as s:
                    store.audit(s, "crl.refused", ca=ca_name, details={
                        "reason": " ".join(str(e).split()), "error": type(e).__name__, "delta": delta,
                        "shard": shard})
            raise
    validity = validity or _validity(settings, delta)
    next_update = now + validity
    directory = Path(out_dir) if out_dir else Path(out).parent if out else _default_dir()
    directory.mkdir(parents=True, exist_ok=True)
    issuer = CRLIssuer.from_certificate(ca_cert)
    results = []
    for sh in wanted:
        # 1. reserve the number (row lock: strictly increasing across nodes) and find the base
        with store.write() as s:
            ca_row = s.get(m.CA, _ca_id(s, ca_name), with_for_update=True)
            base = None
            if delta:
                base = s.execute(
                    select(m.CRL).where(m.CRL.ca_id == ca_row.id, m.CRL.is_delta.is_(False),
                                        (m.CRL.shard == sh) if sh is not None else m.CRL.shard.is_(None))
                    .order_by(m.CRL.number.desc()).limit(1)).scalar_one_or_none()
                if base is None:
                    raise RevocationError(f"CA {ca_name!r} has no base CRL{_shard_text(sh)} yet; "
                                          "generate one before a delta CRL")
                base_number, base_time = base.number, base.this_update
            else:
                base_number, base_time = None, None
            number = ca_row.crl_number + 1
            ca_row.crl_number = number
            store.audit(s, "crl.number-reserved", ca=ca_name, target=str(number),
                        details={"delta": delta, "shard": sh})
        # 2. build and sign, streaming the entries from the database
        path = Path(out) if out else crl_path(ca_name, sh, delta, directory)
        counted = _Counter(_revoked_rows(store, ca_row.id, now, base_time, shards, sh))
        idp = scheme.idp(sh) if scheme is not None else None
        freshest = [delta_url.format(shard=sh) if sh is not None else delta_url] if (delta_url and not delta) else []
        # unique per generation (pid first: recovery leaves a live process's files alone)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}-{secrets.token_hex(4)}")
        h = _HashingWriter(tmp)
        try:
            size = build_crl(issuer=issuer, signing_key=key, crl_number=number, this_update=now,
                             next_update=next_update, entries=counted, delta_base=base_number,
                             freshest_crl_urls=freshest, idp=idp, out=h)
            h.close()
            # 3. publish and record it, under the CA row lock: a CRL overtaken (while it was being
            #    signed) by a higher-numbered one written to the same file is recorded, not published
            #    over it -- the published file never goes back to a lower number
            with store.write() as s:
                s.get(m.CA, ca_row.id, with_for_update=True)
                newer = s.execute(select(m.CRL.number).where(m.CRL.ca_id == ca_row.id, m.CRL.path == str(path),
                                                             m.CRL.number > number)
                                  .order_by(m.CRL.number.desc()).limit(1)).scalar_one_or_none()
                if newer is None:
                    os.replace(tmp, path)
                s.add(m.CRL(ca_id=ca_row.id, number=number, is_delta=delta, base_number=base_number, shard=sh,
                            this_update=taken, next_update=next_update, entries=counted.n, sha256=h.hexdigest(),
                            path=str(path) if newer is None else None))
                store.audit(s, "crl.generated", ca=ca_name, target=str(number),
                            details={"delta": delta, "base": base_number, "shard": sh, "entries": counted.n,
                                     "sha256": h.hexdigest(), "next_update": next_update.isoformat(),
                                     **({"superseded_by": newer} if newer is not None else {})})
        finally:
            h.close()
            tmp.unlink(missing_ok=True)
        results.append(GeneratedCRL(ca_name, number, delta, base_number, sh, now, next_update, counted.n, size,
                                    h.hexdigest(), str(path) if newer is None else "", newer))
        if progress:
            progress(results[-1])
    return results


def _ca_id(session, name: str) -> int:
    return get_ca_row(session, name).id


def _shard_text(sh: int | None) -> str:
    return f" for shard {sh}" if sh is not None else ""


def _validity(settings: dict, delta: bool) -> dt.timedelta:
    key = "delta_crl_validity_hours" if delta else "crl_validity_hours"
    hours = settings.get(key)
    if hours is None:
        return DEFAULT_DELTA_VALIDITY if delta else DEFAULT_CRL_VALIDITY
    return dt.timedelta(hours=float(hours))


def _default_dir() -> Path:
    from unica.store import unica_home

    return unica_home() / "crl"


class _Counter:
    def __init__(self, it):
        self._it = iter(it)
        self.n = 0

    def __iter__(self):
        for e in self._it:
            self.n += 1
            yield e


class _HashingWriter:
    """A buffered file writer that hashes what it writes."""

    def __init__(self, path: Path):
        self._f = open(path, "wb", buffering=1 << 20)
        os.chmod(path, 0o644)
        self._h = hashlib.sha256()

    def write(self, data) -> int:
        self._h.update(data)
        return self._f.write(data)

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def hexdigest(self) -> str:
        return self._h.hexdigest()
