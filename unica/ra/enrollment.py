"""Enrollment with a one-time code, and re-enrollment with the current certificate.

The certificate's identity comes from the registry: the subject is C=CN, O=the enterprise's
registered name, organizationIdentifier=its USCC, CN=the application's holder -- never the
CSR's subject. Everything else in the CSR (its key, the extensions the profile honours) is
subject to the profile as in ``unica issue``, through :meth:`unica.ca.issuance.IssuingCA.issue`,
which records the intent before the one signature.

A code is consumed only by a certificate issued with it, and one code issues at most one
certificate: the code is checked (outside any transaction), then
*claimed* by one conditional UPDATE (``approved`` -> ``enrolled`` where the row still holds
that code's hash, fewer than 5 failures, no certificate) in the very transaction that records
the issuance intent: of two enrollments at once, one claims it and the other's intent is rolled
back (``code-used``). The transaction that stores the signed certificate also links it to the
enterprise and the application. If signing fails, the intent is marked failed and the claim released: the
code works again. A process killed after that transaction leaves a claim with a pending intent:
the next use of the code waits until ``unica recover`` rolled the intent back (then the claim
is released), or links the certificate if it was stored -- and then, as that process never
handed it out, the same code with the same key answers that certificate (nothing is issued);
another key, or a code whose enrollment completed, is refused (``code-used``).

The issuance runs as the officer who completed the application's quorum, with every approver
named (:data:`unica.store.db.CURRENT_ACTOR`): the audit names them and the application.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import functools
import types

from sqlalchemy import select, update

from unica.errors import StoreError, UnicaError
from unica.ra import codes
from unica.ra.errors import EnrollmentRefused
from unica.ra.registry import MAX_CODE_FAILURES, _check_app_id, audit_refusal, certificate_row, registry_subject
from unica.store import models as m
from unica.store.db import CURRENT_ACTOR, Store, append_audit

_DUMMY_SALT = "00" * 16


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return codes.hash_code("0" * codes.CODE_CHARS, _DUMMY_SALT)




def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def requester_tag(app_id: str) -> str:
    """The requester recorded with a certificate issued for an application."""
    return f"application {app_id}"


def approving_actor(s, app: m.Application | None):
    """The :class:`unica.auth.guard.Actor` an application's certificate is issued as: the officer
    whose approval completed the quorum, with every approver named and the application as the
    request (None: no officer approved it -- a home without operators)."""
    if app is None:
        return None
    rows = s.execute(select(m.Operator).join(m.ApplicationApproval, m.ApplicationApproval.operator_id == m.Operator.id)
                     .where(m.ApplicationApproval.application_id == app.id,
                            m.ApplicationApproval.decision == "approve")
                     .order_by(m.ApplicationApproval.id)).scalars().all()
    return _actor(app, rows)


def _actor(app, approvers: list):
    """The Actor of an application approved by ``approvers`` (Operator rows, in the order they
    approved; the last completed the quorum), None for none."""
    if not approvers:
        return None
    from unica.auth.guard import actor_of, describe

    return actor_of(approvers[-1], approvers=tuple(describe(r) for r in approvers), request_id=app.id)


@functools.lru_cache(maxsize=1)
def _application_query():
    """The enrollment's one read as a Core statement built once: the application, its
    enterprise and the operators who approved it (if approved; outer joins, in approval order),
    each column labelled with its table (``a_``, ``e_``, ``o_``)."""
    from sqlalchemy import bindparam

    a, e = m.Application.__table__, m.Enterprise.__table__
    ap, o = m.ApplicationApproval.__table__, m.Operator.__table__
    cols = [c.label(f"{p}_{c.name}") for p, t in (("a", a), ("e", e), ("o", o)) for c in t.c]
    return (select(*cols).select_from(
        a.join(e, e.c.id == a.c.enterprise_id)
        .outerjoin(ap, (ap.c.application_id == a.c.id) & (ap.c.decision == "approve") & (a.c.status == "approved"))
        .outerjoin(o, o.c.id == ap.c.operator_id))
        .where(a.c.id == bindparam("b_app")).order_by(ap.c.id))


def _columns(row, prefix: str) -> types.SimpleNamespace:
    n = len(prefix)
    return types.SimpleNamespace(**{k[n:]: v for k, v in row._mapping.items() if k.startswith(prefix)})


def _read_application(store: Store, app_id: str):
    """(application, its enterprise, :func:`approving_actor` of it if approved) in one Core
    query -- the enrollment's one read, its rows as plain read-only values (the enrollment
    writes with statements of its own); (None, None, None) when there is no such application."""
    rows = store.rows(_application_query(), {"b_app": app_id})
    if not rows:
        return None, None, None
    app, ent = _columns(rows[0], "a_"), _columns(rows[0], "e_")
    approvers = [_columns(r, "o_") for r in rows if r.o_id is not None]
    return app, ent, _actor(app, approvers) if app.status == "approved" else None


def _refused(store: Store, slug: str, message: str, *, office=None, client=None, target=None, ca=None,
             event: str = "enrollment.refused", **details) -> EnrollmentRefused:
    e = EnrollmentRefused(slug, message)
    audit_refusal(store, event, e, office=office, client=client, target=target, ca=ca, **details)
    return e


def _request(csr, subject, source: str):
    from unica.ca.request import CSRRequest, parse_csr

    req = csr if isinstance(csr, CSRRequest) else parse_csr(csr, source)
    return dataclasses.replace(req, subject=subject)


def _link(s, ca_id: int, serial_hex: str, ent: m.Enterprise) -> int:
    """Record the certificate's enterprise and office; its row id."""
    cert = s.scalars(select(m.Certificate).where(m.Certificate.ca_id == ca_id,
                                                 m.Certificate.serial == serial_hex)).one()
    cert.enterprise_id = ent.id
    cert.office = ent.office
    return cert.id


def _resolve_claim(store: Store, app_id: str, now: dt.datetime) -> str:
    """An application claimed without a certificate: ``"linked"`` (a certificate was issued
    under the claim: now linked), ``"waiting"`` (an enrollment is in flight, or its intent
    awaits recovery) or ``"released"`` (abandoned: the code works again)."""
    with store.write() as s:
        app = s.scalars(select(m.Application).where(m.Application.id == app_id).with_for_update()).one()
        if app.status != "enrolled" or app.certificate_id is not None:
            return "linked" if app.status == "enrolled" else "released"
        ent = s.get(m.Enterprise, app.enterprise_id)
        ca_id = s.scalar(select(m.CA.id).where(m.CA.name == app.ca_name))
        rows = s.execute(select(m.Certificate.id, m.Certificate.serial, m.Certificate.status).where(
            m.Certificate.ca_id == ca_id, m.Certificate.requester == requester_tag(app.id))
            .order_by(m.Certificate.id)).all()
        issued = [r for r in rows if r.status in ("valid", "hold", "revoked")]
        if issued:
            app.certificate_id = _link(s, ca_id, issued[0].serial, ent)
            append_audit(s, "enrollment.completed", ca=app.ca_name, target=app.id, details={
                "uscc": ent.uscc, "office": ent.office, "serial": issued[0].serial,
                "note": "linked after the enrolling process ended before linking it"})
            return "linked"
        if any(r.status == "pending" for r in rows):
            return "waiting"
        # every intent recorded under the claim was rolled back (signing failed, or 'unica recover'):
        # the claim and its intent are one transaction, so no enrollment is between the two
        app.status = "approved"
        app.claimed_at = None
        append_audit(s, "enrollment.claim_released", ca=app.ca_name, target=app.id, details={
            "uscc": ent.uscc, "office": ent.office,
            "reason": "the enrollment that claimed the code ended without issuing (its intent rolled back)"})
        return "released"


def _replay(store: Store, app, code, csr):
    """The certificate an application already holds, for the same code and the same key again
    (the CSR's signature proves the key): a client whose answer was lost -- a dropped
    connection, a service killed after storing the certificate -- gets it by sending its
    request again, and nothing is issued. None: not that case (then the code is used up: for
    any other key it is refused)."""
    from unica.ca.issuance import Issued
    from unica.ca.request import CSRRequest, parse_csr
    from unica.hsm.keytypes import spki_der

    if app.certificate_id is None:
        return None
    if not codes.code_matches(code, app.code_salt, app.code_hash):
        return None
    try:
        req = csr if isinstance(csr, CSRRequest) else parse_csr(csr, "the CSR")
        spki = req.spki_der or spki_der(req.public_key)
    except (UnicaError, ValueError, TypeError):
        return None
    import hashlib

    with store.write() as s:
        row = s.get(m.Certificate, app.certificate_id)
        ca = s.scalar(select(m.CA.name).where(m.CA.id == row.ca_id))
        if row.status != "valid" or row.der is None or row.spki_sha256 != hashlib.sha256(spki).hexdigest():
            return None
        append_audit(s, "enrollment.replayed", ca=ca, target=app.id, details={
            "serial": row.serial, "note": "the same code and key again: the certificate issued before, nothing issued"})
        return Issued(int(row.serial, 16), row.serial, row.der, row.fingerprint_sha256, row.profile, ca, True)


def enroll(store: Store, app_id: str, code: str, csr, *, issuer, client: str | None = None):
    """Issue the application's certificate for ``csr`` if ``code`` is its one-time code.

    ``issuer``: the :class:`~unica.ca.issuance.IssuingCA`, or a function of the application's
    (CA name, office) that returns it -- called once the application is read, before its code
    is checked, so that a caller serving several CAs (the service) picks the issuer without a read
    of its own; what it raises propagates, unaudited here.

    Returns the :class:`unica.ca.issuance.Issued`. Raises :class:`EnrollmentRefused` (audited
    ``enrollment.refused`` with the office and the client); a wrong code counts against the
    application (locked at 5) -- the one change a refusal makes."""
    now = _now()
    app, ent, actor = _read_application(store, app_id) if _check_app_id(app_id) else (None, None, None)
    if app is None:
        codes.code_matches(code, _DUMMY_SALT, _dummy_hash())  # the time a wrong code takes: ids are not probed
        raise _refused(store, "no-such-application", "the application id or the enrollment code is wrong",
                       client=client, target=app_id[:64] if isinstance(app_id, str) else None)
    office = ent.office
    if callable(issuer):
        issuer = issuer(app.ca_name, office)
    ctx = {"office": office, "client": client, "target": app.id, "ca": app.ca_name}
    if app.status == "enrolled" and app.certificate_id is None:
        state = _resolve_claim(store, app.id, now)
        if state != "waiting":
            app, ent, actor = _read_application(store, app.id)
        else:
            raise _refused(store, "code-used", f"application {app.id}: an enrollment with this code is in progress",
                           **ctx)
    if app.status in ("submitted", "rejected"):
        raise _refused(store, "not-approved", f"application {app.id} is {app.status}"
                       + (f": {app.reason}" if app.status == "rejected" and app.reason else ""), **ctx)
    if app.status == "enrolled":
        replay = _replay(store, app, code, csr)
        if replay is not None:
            return replay
        raise _refused(store, "code-used", f"the code of application {app.id} was used", **ctx)
    if app.status == "expired" or (app.code_expires_at is not None and now > app.code_expires_at):
        raise _refused(store, "code-expired", f"the code of application {app.id} expired", **ctx)
    if app.status != "approved":
        raise _refused(store, "not-approved", f"application {app.id} is {app.status}", **ctx)
    if app.code_failures >= MAX_CODE_FAILURES:
        raise _refused(store, "code-locked", f"application {app.id} is locked after {MAX_CODE_FAILURES} wrong codes; "
                                             "its office can make a new application", **ctx)
    if not codes.code_matches(code, app.code_salt, app.code_hash):
        e = EnrollmentRefused("code-invalid", "the application id or the enrollment code is wrong")
        with store.write() as s:
            s.execute(update(m.Application).where(m.Application.id == app.id, m.Application.status == "approved")
                      .values(code_failures=m.Application.code_failures + 1))
            failures = s.scalar(select(m.Application.code_failures).where(m.Application.id == app.id))
            append_audit(s, "enrollment.refused", ca=app.ca_name, target=app.id, details={
                "reason": str(e), "error": "EnrollmentRefused", "slug": "code-invalid", "office": office,
                "client": client, "code_failures": failures,
                **({"locked": True} if failures >= MAX_CODE_FAILURES else {})})
        e._unica_audited = True
        raise e
    if issuer.name != app.ca_name:
        raise _refused(store, "other-ca", f"application {app.id} is for CA {app.ca_name}, not {issuer.name}", **ctx)
    if ent.status != "active":
        raise _refused(store, "enterprise-disabled", f"enterprise {ent.uscc} is {ent.status}", **ctx)
    source = requester_tag(app.id)
    try:
        request = _request(csr, registry_subject(ent.name, ent.uscc, app.holder), f"the CSR of {source}")
    except UnicaError as e:
        audit_refusal(store, "enrollment.refused", e, **{k: v for k, v in ctx.items()})
        raise
    if app.csr_der is not None and _spki(request) != _spki(_request(bytes(app.csr_der), request.subject, "")):
        # the office approved the key of the CSR sent with the application: only that key is certified
        raise _refused(store, "key-mismatch", f"application {app.id} was approved for the key of the CSR sent "
                                              "with it; enroll with that key", **ctx)
    return _issue_claimed(store, app, ent, actor, request, issuer, client, source, ctx)


def _spki(request) -> bytes:
    from unica.hsm.keytypes import spki_der

    return request.spki_der or spki_der(request.public_key)


class _ClaimLost(Exception):
    """Another enrollment claimed the code first (raised inside the intent's transaction)."""


class _StoreWithSteps:
    """The store as the issuer sees it during one of its two transactions (its
    :meth:`~unica.store.db.Store.write_connection`): ``before(conn)`` runs first in that
    transaction and ``after(conn)`` last, so that they commit (or roll back) with it."""

    def __init__(self, store, before=None, after=None):
        self._store, self._before, self._after = store, before, after

    def __getattr__(self, name):
        return getattr(self._store, name)

    @contextlib.contextmanager
    def write_connection(self):  # the issuer's two transactions (unica.ca.issuance)
        with self._store.write_connection() as conn:
            if self._before is not None:
                self._before(conn)
            yield conn
            if self._after is not None:
                self._after(conn)


def _enrolling_issuer(issuer, claim, complete, state: dict, owner: dict):
    """A per-enrollment view of ``issuer`` (the same CA, the same loaded key) whose two
    transactions carry the enrollment: the intent's first claims the code (of two enrollments
    with one code, one wins; the other's intent is rolled back), and the one that stores the
    signed certificate -- with its ``owner`` ({"enterprise_id", "office"}) -- also
    ``complete(s, serial_hex)``s the enrollment (the application linked, audited) -- one commit,
    so a stored certificate is never left unlinked. ``state["claimed"]`` once the claim committed."""
    from unica.ca.issuance import IssuingCA

    if not isinstance(issuer, IssuingCA):
        raise TypeError(f"issuer must be an unica.ca.issuance.IssuingCA (or a subclass), not {type(issuer).__name__}")
    mine = copy.copy(issuer)
    mine._owner = owner
    record, store_signed = type(issuer)._insert_intents, type(issuer)._store_signed

    @contextlib.contextmanager
    def steps(**kw):
        real = mine.store
        mine.store = _StoreWithSteps(real, **kw)
        try:
            yield
        finally:
            mine.store = real

    def insert_intents(prepared, requester):
        with steps(before=claim):
            record(mine, prepared, requester)
        state["claimed"] = True

    def store_and_complete(prepared, cert_der, requester):
        with steps(after=lambda s: complete(s, m.serial_hex(prepared.serial))):
            return store_signed(mine, prepared, cert_der, requester)

    mine._insert_intents = insert_intents
    mine._store_signed = store_and_complete
    return mine


@functools.lru_cache(maxsize=1)
def _enrollment_statements():
    """(claim, complete application): the enrollment's writes as Core statements built once (the
    hot path of every enrollment)."""
    from sqlalchemy import bindparam

    a, c = m.Application.__table__, m.Certificate.__table__
    claim = (update(a).where((a.c.id == bindparam("b_app")) & (a.c.status == "approved")
                             & (a.c.code_hash == bindparam("b_hash")) & (a.c.code_failures < MAX_CODE_FAILURES)
                             & a.c.certificate_id.is_(None))
             .values(status="enrolled", claimed_at=bindparam("b_now")))
    cert_id = select(c.c.id).where((c.c.ca_id == bindparam("b_ca")) & (c.c.serial == bindparam("b_serial")))
    done = (update(a).where(a.c.id == bindparam("b_app"))
            .values(certificate_id=cert_id.scalar_subquery(), claimed_at=None))
    return claim, done


def _issue_claimed(store, app, ent, actor, request, issuer, client, source, ctx):
    now = _now()
    claim_stmt, done_stmt = _enrollment_statements()

    def claim(conn) -> None:  # of two enrollments with one code, one wins; the other's intent is rolled back
        if conn.execute(claim_stmt, {"b_app": app.id, "b_hash": app.code_hash, "b_now": now}).rowcount != 1:
            raise _ClaimLost()

    def complete(conn, serial_hex: str) -> None:  # in the transaction that stored the certificate (with
        # its enterprise and office: the issuer's _owner); claimed_at cleared: the enrollment completed
        # (the same code and key again replay it: _replay)
        if conn.execute(done_stmt, {"b_app": app.id, "b_ca": issuer.ca_id, "b_serial": serial_hex}).rowcount != 1:
            raise StoreError(f"application {app.id} is gone")
        append_audit(conn, "enrollment.completed", ca=app.ca_name, target=app.id, details={
            "uscc": ent.uscc, "office": ent.office, "client": client, "serial": serial_hex,
            "profile": app.profile, "holder": app.holder})

    token = CURRENT_ACTOR.set(actor) if actor is not None else None
    state = {"claimed": False}
    mine = _enrolling_issuer(issuer, claim, complete, state, {"enterprise_id": ent.id, "office": ent.office})
    try:
        try:
            return mine.issue(request, app.profile, requester=source, source=source)
        except _ClaimLost:
            raise _refused(store, "code-used", f"the code of application {app.id} was used", **ctx) from None
        except BaseException as e:
            if state["claimed"]:  # this enrollment's claim released (its intent failed): the code works again
                with store.write() as s:
                    s.execute(update(m.Application).where(
                        m.Application.id == app.id, m.Application.status == "enrolled",
                        m.Application.claimed_at == now,
                        m.Application.certificate_id.is_(None)).values(status="approved", claimed_at=None))
            if isinstance(e, UnicaError) and type(e).__name__ != "ApprovalPending":
                audit_refusal(store, "enrollment.refused", e, office=ent.office, client=client, target=app.id,
                              ca=app.ca_name, stage="issuance")
            raise
    finally:
        if getattr(issuer, "_key", None) is None and getattr(mine, "_key", None) is not None:
            issuer._key = mine._key  # the CA key loaded for this enrollment stays loaded for the next
        if token is not None:
            CURRENT_ACTOR.reset(token)


def reenroll(store: Store, cert_der: bytes, csr, *, issuer, client: str | None = None):
    """A new certificate for the holder of ``cert_der`` (the current one: issued by this
    database to an enterprise, valid now, not revoked or on hold), same identity from the
    registry, same profile; a new key is allowed. Raises :class:`EnrollmentRefused`."""
    now = _now()
    with store.read() as s:
        row = certificate_row(s, cert_der)
        ent = s.get(m.Enterprise, row.enterprise_id) if row is not None and row.enterprise_id else None
        ca_name = s.scalar(select(m.CA.name).where(m.CA.id == row.ca_id)) if row is not None else None
        app = None
        if row is not None:
            app = s.scalars(select(m.Application).where(m.Application.certificate_id == row.id)).first()
            if app is None and (row.requester or "").startswith("application "):
                app = s.get(m.Application, row.requester.split(" ", 1)[1])
    ctx = {"office": ent.office if ent else None, "client": client, "target": row.serial if row else None,
           "ca": ca_name, "kind": "reenroll"}
    if row is None:
        raise _refused(store, "certificate-unknown", "the client certificate was not issued by this CA", **ctx)
    if ent is None:
        raise _refused(store, "not-enterprise", f"certificate {row.serial} was not issued to a registered enterprise",
                       **ctx)
    if row.status in ("revoked", "hold"):
        raise _refused(store, "certificate-revoked", f"certificate {row.serial} is "
                       + ("on hold" if row.status == "hold" else "revoked"), **ctx)
    if row.status != "valid":
        raise _refused(store, "certificate-unknown", f"certificate {row.serial} is {row.status}", **ctx)
    if now < row.not_before or now > row.not_after:
        raise _refused(store, "certificate-expired", f"certificate {row.serial} is not valid now "
                       f"({row.not_before:%Y-%m-%d %H:%M}Z to {row.not_after:%Y-%m-%d %H:%M}Z)", **ctx)
    if row.ca_id != issuer.ca_id:
        raise _refused(store, "other-ca", f"certificate {row.serial} was issued by CA {ca_name}, not {issuer.name}",
                       **ctx)
    if ent.status != "active":
        raise _refused(store, "enterprise-disabled", f"enterprise {ent.uscc} is {ent.status}", **ctx)
    holder = app.holder if app is not None else _cn(row)
    if holder is None:
        raise _refused(store, "not-enterprise", f"certificate {row.serial} names no holder", **ctx)
    source = requester_tag(app.id) if app is not None else f"reenrollment of {row.serial}"
    try:
        request = _request(csr, registry_subject(ent.name, ent.uscc, holder), "the CSR (re-enrollment)")
    except UnicaError as e:
        audit_refusal(store, "enrollment.refused", e, **ctx)
        raise
    with store.read() as s:
        actor = approving_actor(s, app)
    token = CURRENT_ACTOR.set(actor) if actor is not None else None
    try:
        try:
            issued = issuer.issue(request, row.profile, requester=source, source=f"reenrollment of {row.serial}")
        except UnicaError as e:
            if type(e).__name__ != "ApprovalPending":
                audit_refusal(store, "enrollment.refused", e, stage="issuance", **ctx)
            raise
        with store.write() as s:
            _link(s, issuer.ca_id, issued.serial_hex, ent)
            append_audit(s, "reenrollment.completed", ca=ca_name, target=issued.serial_hex, details={
                "uscc": ent.uscc, "office": ent.office, "client": client, "previous_serial": row.serial,
                "serial": issued.serial_hex, "profile": row.profile, "holder": holder,
                "application": app.id if app is not None else None})
        return issued
    finally:
        if token is not None:
            CURRENT_ACTOR.reset(token)


def _cn(row: m.Certificate) -> str | None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        attrs = x509.load_der_x509_certificate(row.der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (ValueError, TypeError):
        return None
    return attrs[0].value if attrs else None
