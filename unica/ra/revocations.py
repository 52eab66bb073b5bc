"""An enterprise's requests to revoke its own certificates.

The requester proves who it is with one of the enterprise's valid certificates (the TLS client
certificate, or the signer of a CMS request -- checked by the caller; here it must be a valid
certificate of this database, issued to the same enterprise as the one to revoke).
keyCompromise is revoked at once: whoever holds the key may say it is compromised, and waiting
helps only the thief. Other reasons wait for an RA officer of the enterprise's office
(:func:`decide_revocation`). Revocation goes through :mod:`unica.ca.revocation` (the OCSP
responses pre-signed for the certificate are dropped; the next CRL lists it).
"""

from __future__ import annotations

import datetime as dt
import os
import re

from sqlalchemy import select, update

from unica.errors import CertificateNotFound, InputError, NotAuthorized, UnicaError
from unica.ra.errors import RegistryConflict, RegistryRefused, RevocationRequestNotFound
from unica.ra.registry import _refuse_operator, _text, audit_refusal, certificate_row, client_of
from unica.store import models as m
from unica.store.db import Store, append_audit

_REQ_ID = re.compile(r"^v[0-9a-f]{12}$")
STATUSES = ("pending", "done", "rejected")
#: reasons an enterprise may give (a hold is not a revocation; removeFromCRL is not a reason)
AT_ONCE = ("keyCompromise",)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _info(s, r: m.RevocationRequest) -> dict:
    cert = s.get(m.Certificate, r.certificate_id)
    ent = s.get(m.Enterprise, r.enterprise_id)
    ca = s.scalar(select(m.CA.name).where(m.CA.id == cert.ca_id)) if cert is not None else None
    return {"id": r.id, "serial": cert.serial if cert else None, "ca": ca, "uscc": ent.uscc if ent else None,
            "enterprise": ent.name if ent else None, "office": ent.office if ent else None, "reason": r.reason,
            "status": r.status, "client": r.client, "created_at": r.created_at, "decided_at": r.decided_at,
            "certificate_status": cert.status if cert else None}


def _target(s, serial, ca: str | None) -> m.Certificate:
    from unica.ca.revocation import parse_serial

    q = select(m.Certificate).where(m.Certificate.serial == m.serial_hex(parse_serial(serial)))
    if ca is not None:
        q = q.join(m.CA, m.CA.id == m.Certificate.ca_id).where(m.CA.name == ca)
    rows = s.scalars(q).all()
    if not rows:
        raise CertificateNotFound(f"no certificate with serial {serial}" + (f" issued by CA {ca}" if ca else ""))
    if len(rows) > 1:
        raise CertificateNotFound(f"serial {serial} was issued by several CAs; name the CA")
    return rows[0]


def request_revocation(store: Store, *, cert_serial, ca: str | None = None, reason: str,
                       requester_cert_der: bytes, client: str | None = None) -> dict:
    """An enterprise asks to revoke one of its certificates (``requester_cert_der``: one of its
    valid certificates). keyCompromise: revoked at once (status ``done``); else ``pending``."""
    from unica.ca.revocation import reason_value

    office = None
    try:
        reason_v = reason_value(reason)
        if reason_v == "certificateHold":
            raise InputError("certificateHold is a suspension, not a revocation: ask the RA office")
        now = _now()
        with store.read() as s:
            who = certificate_row(s, requester_cert_der)
            if who is None or who.enterprise_id is None:
                raise RegistryRefused("requester-invalid", "the requesting certificate is not an enterprise's "
                                                           "certificate of this CA")
            ent = s.get(m.Enterprise, who.enterprise_id)
            office = ent.office
            if who.status != "valid" or not (who.not_before <= now <= who.not_after):
                raise RegistryRefused("requester-invalid", f"the requesting certificate {who.serial} is "
                                      + (who.status if who.status != "valid" else "not valid now"))
            target = _target(s, cert_serial, ca)
            if target.enterprise_id != who.enterprise_id:
                raise RegistryRefused("not-your-certificate",
                                      f"certificate {target.serial} is not enterprise {ent.uscc}'s")
            if target.status not in ("valid", "hold"):
                raise RegistryConflict("not-revocable", f"certificate {target.serial} is {target.status}")
            ca_name = s.scalar(select(m.CA.name).where(m.CA.id == target.ca_id))
            target_id, target_serial = target.id, target.serial
        if reason_v in AT_ONCE:
            from unica.ca.revocation import _revoke

            # the enterprise's own valid certificate is the authority here (no operator acts)
            _revoke(store, int(target_serial, 16), ca_name, reason_v, None, now)
            status = "done"
        else:
            status = "pending"
        with store.write() as s:
            if status == "pending" and s.scalars(select(m.RevocationRequest.id).where(
                    m.RevocationRequest.certificate_id == target_id,
                    m.RevocationRequest.status == "pending")).first() is not None:
                raise RegistryConflict("already-requested", f"a revocation of certificate {target_serial} is "
                                                            "pending already")
            req = m.RevocationRequest(id=_new_id(s), certificate_id=target_id, enterprise_id=ent.id, reason=reason_v,
                                      status=status, created_at=now, decided_at=now if status == "done" else None,
                                      client=client)
            s.add(req)
            s.flush()
            append_audit(s, "revocation-request.done" if status == "done" else "revocation-request.created",
                         ca=ca_name, target=req.id, details={
                             "serial": target_serial, "uscc": ent.uscc, "office": ent.office, "reason": reason_v,
                             "client": client, "requester_serial": who.serial})
            return _info(s, req)
    except UnicaError as e:
        audit_refusal(store, "revocation-request.refused", e, office=office, client=client,
                      target=str(cert_serial)[:64], ca=ca)
        raise


def _new_id(s) -> str:
    while True:
        rid = "v" + os.urandom(6).hex()
        if s.get(m.RevocationRequest, rid) is None:
            return rid


def _row(s, req_id: str, *, lock: bool = False) -> m.RevocationRequest:
    if not isinstance(req_id, str) or not _REQ_ID.match(req_id):
        raise RevocationRequestNotFound(f"no revocation request {req_id!r} (ids look like v0123456789ab)")
    q = select(m.RevocationRequest).where(m.RevocationRequest.id == req_id)
    if lock:
        q = q.with_for_update()
    row = s.scalars(q).first()
    if row is None:
        raise RevocationRequestNotFound(f"no revocation request {req_id}")
    return row


def decide_revocation(store: Store, req_id: str, approve: bool, reason: str | None = None, auth=None) -> dict:
    """An RA officer of the enterprise's office revokes (approve) or declines (reject, with a
    reason) a pending request."""
    from unica.auth import Operation, authorized
    from unica.ra.registry import _office_problem

    office = acting = None
    try:
        if not isinstance(approve, bool):
            raise InputError("approve must be true or false")
        reason = _text(reason, "the reason", 500, required=not approve)
        with store.read() as s:
            req = _row(s, req_id)
            info = _info(s, req)
        office = info["office"]
        op = Operation("revocation-request.decide", ca=info["ca"], params={
            "request": req.id, "serial": info["serial"], "approve": approve, "reason": reason})
        with authorized(store, op, auth) as actor:
            acting = actor
            with store.read() as s:
                problem = _office_problem(s, actor, office)
            if problem:
                raise _refuse_operator(store, op, actor, problem)
            now = _now()
            with store.write() as s:
                claimed = s.execute(update(m.RevocationRequest).where(
                    m.RevocationRequest.id == req.id, m.RevocationRequest.status == "pending").values(
                    status="done" if approve else "rejected", decided_at=now)).rowcount
                if claimed != 1:
                    raise RegistryConflict("request-decided", f"revocation request {req.id} was decided already")
            if approve:
                from unica.ca.revocation import revoke

                try:  # as the officer (the operator check above; nested, it is not asked again)
                    revoke(store, info["serial"], ca=info["ca"], reason=req.reason, at=now)
                except BaseException:
                    with store.write() as s:
                        s.execute(update(m.RevocationRequest).where(m.RevocationRequest.id == req.id).values(
                            status="pending", decided_at=None))
                    raise
            with store.write() as s:
                append_audit(s, "revocation-request.done" if approve else "revocation-request.rejected",
                             ca=info["ca"], target=req.id, details={
                                 "serial": info["serial"], "uscc": info["uscc"], "office": office,
                                 "reason": req.reason, "decision_reason": reason})
                return _info(s, s.get(m.RevocationRequest, req.id))
    except NotAuthorized:
        raise
    except UnicaError as e:
        audit_refusal(store, "revocation-request.refused", e, office=office, client=client_of(auth),
                      target=req_id[:64] if isinstance(req_id, str) else None, operator=acting)
        raise


def get_revocation_request(store: Store, req_id: str) -> dict:
    with store.read() as s:
        return _info(s, _row(s, req_id))


def list_revocation_requests(store: Store, *, office: str | None = None, status: str | None = None,
                             uscc: str | None = None, limit: int = 1000) -> list[dict]:
    if status is not None and status not in STATUSES:
        raise InputError(f"bad status {status!r}: one of {', '.join(STATUSES)}")
    q = select(m.RevocationRequest).join(m.Enterprise, m.Enterprise.id == m.RevocationRequest.enterprise_id)
    if office is not None:
        q = q.where(m.Enterprise.office == office)
    if status is not None:
        q = q.where(m.RevocationRequest.status == status)
    if uscc is not None:
        from unica.ra.registry import check_uscc

        q = q.where(m.Enterprise.uscc == check_uscc(uscc))
    with store.read() as s:
        return [_info(s, r) for r in s.scalars(q.order_by(m.RevocationRequest.created_at.desc()).limit(limit))]
