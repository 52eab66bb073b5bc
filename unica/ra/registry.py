"""Enterprises and their applications: registration, RA decisions under dual control, codes.

An application names an enterprise, a profile and a holder (the subject's CN). It is approved
when distinct RA officers of the enterprise's office have approved it as many times as the
profile's approval rule says (``cert.issue:PROFILE``, e.g. 2 for ``enterprise-sign``; no rule:
one). The officer who creates an application approves it by creating it. Approval releases a
one-time enrollment code (see :mod:`unica.ra.codes`): to the officer at the decision that
completes the quorum for an application an officer made; to the enterprise's first status
poll for a self-service application (the code is made then: it is never stored in the clear,
so it can be shown only where it is made). A rejection needs a reason and ends the application.

Without operators (a home from before joint operation) there is nobody to check: an
application is approved when created or first approved.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re

from sqlalchemy import func, or_, select, update

from unica.errors import InputError, NotAuthorized, UnicaError
from unica.ra import codes
from unica.ra.errors import (ApplicationNotFound, EnrollmentRefused, EnterpriseNotFound, RegistryConflict,
                             RegistryRefused)
from unica.store import models as m
from unica.store.db import Store, append_audit

#: how long a released code is valid
DEFAULT_CODE_LIFETIME = dt.timedelta(days=7)
#: wrong codes before an application is locked
MAX_CODE_FAILURES = 5

_APP_ID = re.compile(r"^a[0-9a-f]{12}$")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
STATUSES = ("submitted", "approved", "rejected", "enrolled", "expired")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


# --- input ------------------------------------------------------------------------------------


def check_uscc(value) -> str:
    from unica.policies.uscc import USCCError, validate_uscc

    if not isinstance(value, str):
        raise InputError("the USCC must be text")
    try:
        return validate_uscc(value.strip())
    except USCCError as e:
        raise InputError(str(e)) from None


def _text(value, what: str, limit: int, *, required: bool = True) -> str | None:
    """A person's text (a name, a holder, a reason): stripped, bounded in characters, no control
    characters."""
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise InputError(f"{what} is required")
        return None
    if not isinstance(value, str):
        raise InputError(f"{what} must be text")
    v = value.strip()
    if not v:
        raise InputError(f"{what} is empty")
    if len(v) > limit:
        raise InputError(f"{what} is longer than {limit} characters")
    if _CONTROL.search(v):
        raise InputError(f"{what} contains control characters")
    return v


def _check_app_id(app_id) -> str | None:
    return app_id if isinstance(app_id, str) and _APP_ID.match(app_id) else None


# --- dicts ------------------------------------------------------------------------------------


def enterprise_info(e: m.Enterprise) -> dict:
    return {"id": e.id, "uscc": e.uscc, "name": e.name, "legal_rep": e.legal_rep, "office": e.office,
            "status": e.status, "created_at": e.created_at}


def application_info(s, a: m.Application, e: m.Enterprise | None = None, *, now: dt.datetime | None = None) -> dict:
    """What is shown of an application (never its code, salt, hash or status token)."""
    e = e or s.get(m.Enterprise, a.enterprise_id)
    needed, role = quorum(s, a.ca_name, a.profile)
    decisions = []
    for d, op in s.execute(select(m.ApplicationApproval, m.Operator).join(
            m.Operator, m.Operator.id == m.ApplicationApproval.operator_id).where(
            m.ApplicationApproval.application_id == a.id).order_by(m.ApplicationApproval.id)):
        decisions.append({"operator": op.name, "serial": op.serial, "decision": d.decision, "reason": d.reason,
                          "at": d.at})
    serial = None
    if a.certificate_id is not None:
        serial = s.scalar(select(m.Certificate.serial).where(m.Certificate.id == a.certificate_id))
    status = a.status
    now = now or _now()
    if status == "approved" and a.code_expires_at is not None and now > a.code_expires_at:
        status = "expired"  # shown so; the row keeps "approved" (nothing is written by reading)
    return {"id": a.id, "uscc": e.uscc if e else None, "enterprise": e.name if e else None,
            "office": e.office if e else None, "ca_name": a.ca_name, "ca": a.ca_name, "profile": a.profile,
            "holder": a.holder, "source": a.source, "status": status, "reason": a.reason, "contact": a.contact,
            "has_csr": a.csr_der is not None,
            "approvals": sum(1 for d in decisions if d["decision"] == "approve"), "needed": needed,
            "approval_role": role, "decisions": decisions,
            "code_released": bool(a.code_released), "code_failures": a.code_failures,
            "code_expires_at": a.code_expires_at if a.status in ("approved", "enrolled") else None,
            "certificate_serial": serial, "created_at": a.created_at, "decided_at": a.decided_at}


# --- the audit of refusals --------------------------------------------------------------------


def audit_refusal(store: Store, event: str, error: BaseException, *, office: str | None = None,
                  client: str | None = None, target: str | None = None, ca: str | None = None,
                  **details) -> None:
    """Record a refusal in its own transaction (the refused change itself was rolled back).
    ``operator``: the :class:`~unica.auth.guard.Actor` who asked (named as the entry's actor)."""
    if getattr(error, "_unica_audited", False):
        return
    operator = details.pop("operator", None) or getattr(error, "_unica_operator", None)
    named = operator is not None and getattr(operator, "is_operator", False)
    try:
        with store.write() as s:
            append_audit(s, event, ca=ca, target=target, actor=operator.audit_actor if named else None, details={
                "reason": " ".join(str(error).split())[:500], "error": type(error).__name__,
                "slug": getattr(error, "slug", None), "office": office, "client": client,
                **({"operator": {"name": operator.name, "serial": operator.serial}} if named else {}), **details})
        error._unica_audited = True
    except UnicaError:
        pass


def _audited(event: str):
    """Audit any refusal (a UnicaError) of the decorated function as ``event``; operator
    refusals are audited by the operator check itself (``auth.refused``)."""
    def deco(fn):
        @functools.wraps(fn)
        def run(store, *args, **kw):
            try:
                return fn(store, *args, **kw)
            except NotAuthorized:
                raise
            except UnicaError as e:
                if type(e).__name__ != "ApprovalPending":
                    audit_refusal(store, event, e, office=getattr(e, "_unica_office", None),
                                  client=kw.get("client") or client_of(kw.get("auth")),
                                  target=getattr(e, "_unica_target", None))
                raise
        return run
    return deco


def _tag(e: BaseException, *, office: str | None = None, target: str | None = None) -> BaseException:
    """Note on a refusal where it happened: the office, the target, the operator acting."""
    from unica.store.db import CURRENT_ACTOR

    e._unica_office = office
    e._unica_target = target
    e._unica_operator = CURRENT_ACTOR.get()
    return e


def client_of(auth) -> str | None:
    """The client an officer's request came from, for the audit: the SHA-256 of the TLS client
    certificate (the service); None for a card on the command line (the actor is the operator)."""
    der = getattr(auth, "cert_der", None)
    if isinstance(der, (bytes, bytearray)):
        import hashlib

        return hashlib.sha256(bytes(der)).hexdigest()
    return None


# --- who acts ---------------------------------------------------------------------------------


def quorum(s, ca: str | None, profile: str) -> tuple[int, str | None]:
    """(approvals needed, role that counts) for issuing under ``profile`` from ``ca``."""
    from unica.auth import Operation
    from unica.auth.guard import rule_for

    rule = rule_for(s, Operation("cert.issue", ca, {"profile": profile}))
    if rule is None:
        return 1, None
    return max(1, rule.approvals), rule.role


def _office_problem(s, actor, office: str, ca: str | None = None, profile: str | None = None,
                    *, admin_ok: bool = False) -> str | None:
    """Why ``actor`` may not act for an enterprise of ``office`` (None: they may)."""
    if actor is None or not actor.is_operator:
        return None
    if admin_ok and "admin" in actor.roles:
        return None
    if "ra-officer" not in actor.roles:
        return f"operator {actor.name} is not an ra-officer (roles: {', '.join(actor.roles) or 'none'})"
    if actor.office != office:
        return (f"operator {actor.name} (office {actor.office or 'none'}) may not act for an enterprise of "
                f"office {office}")
    row = s.scalars(select(m.Office).where(m.Office.name == office)).first()
    if row is None:
        return f"office {office} does not exist"
    if ca is not None and ca not in (row.cas or []):
        return f"office {office} may not use CA {ca} (its CAs: {', '.join(row.cas or []) or 'none'})"
    if profile is not None and profile not in (row.profiles or []):
        return (f"office {office} may not use profile {profile} "
                f"(its profiles: {', '.join(row.profiles or []) or 'none'})")
    return None


def _refuse_operator(store: Store, op, actor, message: str) -> NotAuthorized:
    from unica.auth.guard import refuse

    who = {"name": actor.name, "serial": actor.serial, "subject": actor.subject} if actor is not None else None
    return refuse(store, op, message, who=who)


# --- enterprises ------------------------------------------------------------------------------


def _office_row(s, office: str) -> m.Office:
    row = s.scalars(select(m.Office).where(m.Office.name == office)).first()
    if row is None:
        raise InputError(f"no RA office {office!r} (see 'unica office list')")
    return row


def _enterprise_row(s, uscc: str, *, lock: bool = False) -> m.Enterprise:
    q = select(m.Enterprise).where(m.Enterprise.uscc == uscc)
    if lock:
        q = q.with_for_update()
    row = s.scalars(q).first()
    if row is None:
        raise EnterpriseNotFound(f"no enterprise with USCC {uscc} is registered")
    return row


@_audited("enterprise.refused")
def add_enterprise(store: Store, *, uscc: str, name: str, office: str, legal_rep: str | None = None,
                   auth=None) -> dict:
    """Register an enterprise (an admin, or an RA officer of ``office``)."""
    from unica.auth import Operation, authorized

    uscc = check_uscc(uscc)
    name = _text(name, "the enterprise name", 64)  # the subject's O: X.520 ub-organization-name
    office = _text(office, "the office", 64)
    legal_rep = _text(legal_rep, "the legal representative", 100, required=False)
    op = Operation("enterprise.add", params={"uscc": uscc, "name": name, "office": office, "legal_rep": legal_rep})
    with authorized(store, op, auth) as actor:
        with store.read() as s:
            problem = _office_problem(s, actor, office, admin_ok=True)
        if problem:
            raise _refuse_operator(store, op, actor, problem)
        try:
            with store.write() as s:
                _office_row(s, office)
                row = s.scalars(select(m.Enterprise).where(m.Enterprise.uscc == uscc).with_for_update()).first()
                if row is not None and not _unverified_and_idle(s, row):
                    raise RegistryConflict("enterprise-exists", f"an enterprise with USCC {uscc} is registered already")
                details = {"name": name, "office": office, "legal_rep": legal_rep}
                if row is None:
                    row = m.Enterprise(uscc=uscc, name=name, legal_rep=legal_rep, office=office, status="active",
                                       created_at=_now())
                    s.add(row)
                else:  # an unverified self-service registration nobody is waiting on: the officer's facts stand
                    details["replaces"] = {"name": row.name, "office": row.office, "status": row.status}
                    row.name, row.legal_rep, row.office, row.status = name, legal_rep, office, "active"
                s.flush()
                append_audit(s, "enterprise.added", target=uscc, details=details)
                return enterprise_info(row)
        except UnicaError as e:
            raise _tag(e, office=office, target=uscc)


@_audited("enterprise.refused")
def set_enterprise_status(store: Store, uscc: str, *, enabled: bool, reason: str, auth=None) -> dict:
    """Disable a registered enterprise (no application, enrollment or re-enrollment for it; its
    certificates stay as they are -- revoke them for that) or enable it again: an admin, or an
    RA officer of its office, with a reason (audited)."""
    from unica.auth import Operation, authorized

    uscc = check_uscc(uscc)
    reason = _text(reason, "the reason", 500)
    op = Operation("enterprise.set", params={"uscc": uscc, "status": "active" if enabled else "disabled",
                                             "reason": reason})
    with authorized(store, op, auth) as actor:
        with store.read() as s:
            office = _enterprise_row(s, uscc).office
            problem = _office_problem(s, actor, office, admin_ok=True)
        if problem:
            raise _refuse_operator(store, op, actor, problem)
        try:
            with store.write() as s:
                ent = _enterprise_row(s, uscc, lock=True)
                want, allowed = ("active", ("disabled",)) if enabled else ("disabled", ("active", "pending"))
                if ent.status == want:
                    raise RegistryConflict("enterprise-status", f"enterprise {uscc} is {want} already")
                if ent.status not in allowed:
                    raise RegistryConflict("enterprise-status", f"enterprise {uscc} is {ent.status}: it cannot be "
                                           + ("enabled" if enabled else "disabled"))
                before, ent.status = ent.status, want
                append_audit(s, "enterprise.enabled" if enabled else "enterprise.disabled", target=uscc, details={
                    "name": ent.name, "office": ent.office, "reason": reason, "was": before})
                s.flush()
                return enterprise_info(ent)
        except UnicaError as e:
            raise _tag(e, office=office, target=uscc)


#: the states of an enterprise: ``active`` (registered by an officer, or verified by the approval of
#: its self-service application), ``pending`` (registered by a self-service application, awaiting
#: its office's decision), ``withdrawn`` (that application was rejected: the USCC may be applied
#: for again, with other facts), ``disabled``
ENTERPRISE_STATUSES = ("active", "pending", "withdrawn", "disabled")
_OPEN = ("submitted", "approved", "enrolled")


def _unverified_and_idle(s, ent: m.Enterprise, *, but: str | None = None) -> bool:
    """A self-service registration no officer has verified, with no application still open
    (other than ``but``) and no certificate: its facts may be replaced."""
    if ent.status not in ("pending", "withdrawn"):
        return False
    q = select(m.Application.id).where(m.Application.enterprise_id == ent.id, m.Application.status.in_(_OPEN))
    if but is not None:
        q = q.where(m.Application.id != but)
    if s.scalars(q.limit(1)).first() is not None:
        return False
    return s.scalars(select(m.Certificate.id).where(m.Certificate.enterprise_id == ent.id).limit(1)).first() is None


def get_enterprise(store: Store, uscc: str) -> dict:
    uscc = check_uscc(uscc)
    with store.read() as s:
        return enterprise_info(_enterprise_row(s, uscc))


def list_enterprises(store: Store, *, office: str | None = None, query: str | None = None,
                     limit: int = 1000) -> list[dict]:
    """Enterprises (of ``office``; whose name or USCC contains ``query``), by USCC."""
    q = select(m.Enterprise)
    if office is not None:
        q = q.where(m.Enterprise.office == office)
    if query:
        like = "%" + query.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = q.where(or_(m.Enterprise.name.like(like, escape="\\"), m.Enterprise.uscc.like(like.upper(), escape="\\")))
    with store.read() as s:
        return [enterprise_info(e) for e in s.scalars(q.order_by(m.Enterprise.uscc).limit(limit))]


# --- applications -----------------------------------------------------------------------------


def registry_subject(enterprise_name: str, uscc: str, holder: str):
    """The subject of a certificate for ``holder`` of the enterprise: C=CN, O, organizationIdentifier, CN."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from unica.policies.dn import attribute

    return x509.Name([x509.RelativeDistinguishedName([attribute(oid, v)]) for oid, v in (
        (NameOID.COUNTRY_NAME, "CN"), (NameOID.ORGANIZATION_NAME, enterprise_name),
        (NameOID.ORGANIZATION_IDENTIFIER, uscc), (NameOID.COMMON_NAME, holder))])


def _check_profile(s, ca: str, profile: str, ent: m.Enterprise, holder: str):
    """The profile exists, the CA issues under it, and the registry's subject passes its rules."""
    from unica.ca.names import apply_subject_rules
    from unica.ca.records import get_ca_row
    from unica.policies import get_profile

    prof = get_profile(profile)  # ProfileNotFound
    ca_row = get_ca_row(s, ca)  # CANotFound
    if ca_row.profiles and profile not in ca_row.profiles:
        raise RegistryRefused("profile-not-allowed", f"CA {ca} does not issue under profile {profile} "
                                                     f"(its profiles: {', '.join(ca_row.profiles)})")
    if ca_row.status != "active":
        raise RegistryRefused("ca-unusable", f"CA {ca} is {ca_row.status}")
    apply_subject_rules(prof, registry_subject(ent.name, ent.uscc, holder), f"profile {profile}")


def _default_ca(office: m.Office, ca: str | None) -> str:
    if ca is not None:
        return ca
    cas = list(office.cas or [])
    if len(cas) != 1:
        raise InputError(f"office {office.name} uses several CAs ({', '.join(cas)}): say which (--ca)")
    return cas[0]


def _new_app_id(s) -> str:
    while True:
        app_id = "a" + os.urandom(6).hex()
        if s.get(m.Application, app_id) is None:
            return app_id


def _approve(s, app: m.Application, now: dt.datetime, lifetime: dt.timedelta | None) -> str | None:
    """Mark ``app`` approved; an officer's application gets its code now (returned, shown once);
    a self-service one when its applicant first polls. The code's life starts now."""
    app.status = "approved"
    app.decided_at = now
    app.code_expires_at = now + (lifetime or DEFAULT_CODE_LIFETIME)
    if app.source != "officer":
        return None
    code = codes.new_code()
    app.code_hash = codes.hash_code(code, app.code_salt)
    app.code_released = True
    return code


def _approvals(s, app_id: str, role: str | None) -> int:
    q = select(func.count()).select_from(m.ApplicationApproval).join(
        m.Operator, m.Operator.id == m.ApplicationApproval.operator_id).where(
        m.ApplicationApproval.application_id == app_id, m.ApplicationApproval.decision == "approve",
        m.Operator.status == "active")
    if role is None:
        return int(s.scalar(q))
    ops = s.scalars(select(m.Operator).join(m.ApplicationApproval, m.Operator.id == m.ApplicationApproval.operator_id)
                    .where(m.ApplicationApproval.application_id == app_id,
                           m.ApplicationApproval.decision == "approve", m.Operator.status == "active")).all()
    return sum(1 for o in ops if role in (o.roles or ()))


@_audited("application.refused")
def create_application(store: Store, *, uscc: str, profile: str, holder: str, ca: str | None = None,
                       lifetime: dt.timedelta = DEFAULT_CODE_LIFETIME, auth=None) -> dict:
    """An officer's application for ``holder`` of the enterprise under ``profile``.

    The creating officer's decision is the first approval; the dict carries ``"code"`` (shown
    once) when that completes the profile's quorum."""
    from unica.auth import Operation, authorized

    uscc = check_uscc(uscc)
    holder = _text(holder, "the holder", 64)  # the subject's CN: X.520 ub-common-name
    profile = _text(profile, "the profile", 64)
    if not isinstance(lifetime, dt.timedelta) or not dt.timedelta(minutes=5) <= lifetime <= dt.timedelta(days=90):
        raise InputError("the code's lifetime must be between 5 minutes and 90 days")
    with store.read() as s:
        ent = _enterprise_row(s, uscc)
        office = _office_row(s, ent.office)
        ca = _default_ca(office, ca)
    op = Operation("application.create", ca=ca, params={"uscc": uscc, "profile": profile, "holder": holder,
                                                        "lifetime_s": int(lifetime.total_seconds())})
    with authorized(store, op, auth) as actor:
        with store.read() as s:
            problem = _office_problem(s, actor, ent.office, ca, profile)
        if problem:
            raise _refuse_operator(store, op, actor, problem)
        try:
            return _create(store, ent.id, ca, profile, holder, lifetime, actor)
        except UnicaError as e:
            raise _tag(e, office=ent.office, target=uscc)


def _create(store, enterprise_id, ca, profile, holder, lifetime, actor) -> dict:
    now = _now()
    with store.write() as s:
        ent = s.get(m.Enterprise, enterprise_id)
        if ent.status in ("pending", "withdrawn"):
            raise RegistryRefused("enterprise-unverified", f"enterprise {ent.uscc} registered itself and no officer "
                                  "has verified it: decide its self-service application (or, once that is rejected, "
                                  "register it with 'enterprise add')")
        if ent.status != "active":
            raise RegistryRefused("enterprise-disabled", f"enterprise {ent.uscc} is {ent.status}")
        _check_profile(s, ca, profile, ent, holder)
        operator = actor is not None and actor.is_operator
        app = m.Application(id=_new_app_id(s), enterprise_id=ent.id, ca_name=ca, profile=profile, holder=holder,
                            source="officer", status="submitted", code_salt=codes.new_salt(), code_failures=0,
                            code_released=False, created_by=actor.operator_id if operator else None,
                            created_at=now)
        s.add(app)
        s.flush()
        needed, role = quorum(s, ca, profile)
        have = 0
        if operator:
            s.add(m.ApplicationApproval(application_id=app.id, operator_id=actor.operator_id, decision="approve",
                                        reason="created the application", at=now))
            s.flush()
            have = _approvals(s, app.id, role)
        code = None
        if not operator or have >= needed:
            code = _approve(s, app, now, lifetime)
        else:  # provisional: the code's lifetime, counted from the approval that completes the quorum
            app.code_expires_at = now + lifetime
        s.flush()
        append_audit(s, "application.created", ca=ca, target=app.id, details={
            "uscc": ent.uscc, "office": ent.office, "profile": profile, "holder": holder, "source": "officer",
            "approvals": have, "needed": needed, "status": app.status})
        if code is not None:
            append_audit(s, "application.approved", ca=ca, target=app.id, details={
                "uscc": ent.uscc, "office": ent.office, "approvals": have, "needed": needed,
                "code_expires_at": _iso(app.code_expires_at), "code_released_to": "officer"})
        info = application_info(s, app, ent, now=now)
        if code is not None:
            info["code"] = code
        return info


def _app_row(s, app_id: str, *, lock: bool = False) -> m.Application:
    if _check_app_id(app_id) is None:
        raise ApplicationNotFound(f"no application {app_id!r} (ids look like a0123456789ab)")
    q = select(m.Application).where(m.Application.id == app_id)
    if lock:
        q = q.with_for_update()
    row = s.scalars(q).first()
    if row is None:
        raise ApplicationNotFound(f"no application {app_id}")
    return row


@_audited("application.refused")
def decide_application(store: Store, app_id: str, *, approve: bool, reason: str | None = None, auth=None) -> dict:
    """An RA officer of the application's office approves or rejects it (a rejection needs a
    reason and ends it). The dict carries ``"code"`` when this decision completed the quorum
    of an officer's application (a self-service applicant gets the code by polling its status)."""
    from unica.auth import Operation, authorized

    if not isinstance(approve, bool):
        raise InputError("approve must be true or false")
    reason = _text(reason, "the reason", 500, required=not approve)
    with store.read() as s:
        app = _app_row(s, app_id)
        ent = s.get(m.Enterprise, app.enterprise_id)
    op = Operation("application.decide", ca=app.ca_name, params={"application": app.id, "approve": approve,
                                                                 "reason": reason})
    with authorized(store, op, auth) as actor:
        with store.read() as s:
            problem = _office_problem(s, actor, ent.office, app.ca_name, app.profile)
        if problem:
            raise _refuse_operator(store, op, actor, problem)
        try:
            return _decide(store, app.id, approve, reason, actor)
        except UnicaError as e:
            raise _tag(e, office=ent.office, target=app.id)


def _decide(store, app_id, approve, reason, actor) -> dict:
    now = _now()
    with store.write() as s:
        app = _app_row(s, app_id, lock=True)  # decisions on one application run one at a time
        ent = s.get(m.Enterprise, app.enterprise_id)
        if app.status != "submitted":
            raise RegistryConflict("application-decided", f"application {app.id} is {app.status} already")
        operator = actor is not None and actor.is_operator
        if operator:
            if s.scalars(select(m.ApplicationApproval.id).where(
                    m.ApplicationApproval.application_id == app.id,
                    m.ApplicationApproval.operator_id == actor.operator_id)).first() is not None:
                raise RegistryConflict("already-decided", f"operator {actor.name} has decided on application {app.id} "
                                                          "already: another officer must decide")
            s.add(m.ApplicationApproval(application_id=app.id, operator_id=actor.operator_id,
                                        decision="approve" if approve else "reject", reason=reason, at=now))
            s.flush()
        needed, role = quorum(s, app.ca_name, app.profile)
        code = None
        if not approve:
            app.status = "rejected"
            app.reason = reason
            app.decided_at = now
            append_audit(s, "application.rejected", ca=app.ca_name, target=app.id, details={
                "uscc": ent.uscc, "office": ent.office, "reason": reason})
            if ent.status == "pending" and _unverified_and_idle(s, ent, but=app.id):
                ent.status = "withdrawn"
                append_audit(s, "enterprise.withdrawn", target=ent.uscc, details={
                    "name": ent.name, "office": ent.office, "application": app.id,
                    "reason": "its self-service registration was not verified: the application was rejected"})
        else:
            have = _approvals(s, app.id, role) if operator else needed
            if have >= needed:
                lifetime = app.code_expires_at - app.created_at if app.code_expires_at else None
                code = _approve(s, app, now, lifetime)
                if ent.status == "pending":
                    ent.status = "active"
                    append_audit(s, "enterprise.verified", target=ent.uscc, details={
                        "name": ent.name, "office": ent.office, "application": app.id})
                append_audit(s, "application.approved", ca=app.ca_name, target=app.id, details={
                    "uscc": ent.uscc, "office": ent.office, "approvals": have, "needed": needed, "reason": reason,
                    "code_expires_at": _iso(app.code_expires_at),
                    "code_released_to": "officer" if code is not None else "applicant (status poll)"})
            else:
                append_audit(s, "application.approval", ca=app.ca_name, target=app.id, details={
                    "uscc": ent.uscc, "office": ent.office, "approvals": have, "needed": needed, "reason": reason})
        s.flush()
        info = application_info(s, app, ent, now=now)
        if code is not None:
            info["code"] = code
        return info


def get_application(store: Store, app_id: str) -> dict:
    with store.read() as s:
        return application_info(s, _app_row(s, app_id))


def list_applications(store: Store, *, office: str | None = None, uscc: str | None = None,
                      status: str | None = None, limit: int = 1000) -> list[dict]:
    """Applications, newest first (``status`` "expired": approved ones whose code expired)."""
    if status is not None and status not in STATUSES:
        raise InputError(f"bad status {status!r}: one of {', '.join(STATUSES)}")
    now = _now()
    q = select(m.Application, m.Enterprise).join(m.Enterprise, m.Enterprise.id == m.Application.enterprise_id)
    if office is not None:
        q = q.where(m.Enterprise.office == office)
    if uscc is not None:
        q = q.where(m.Enterprise.uscc == check_uscc(uscc))
    if status == "expired":
        q = q.where(m.Application.status.in_(("approved", "expired")),
                    or_(m.Application.status == "expired", m.Application.code_expires_at < now))
    elif status == "approved":
        q = q.where(m.Application.status == "approved",
                    or_(m.Application.code_expires_at.is_(None), m.Application.code_expires_at >= now))
    elif status is not None:
        q = q.where(m.Application.status == status)
    with store.read() as s:
        return [application_info(s, a, e, now=now)
                for a, e in s.execute(q.order_by(m.Application.created_at.desc(), m.Application.id).limit(limit))]


# --- self-service -----------------------------------------------------------------------------


@_audited("application.refused")
def submit_application(store: Store, *, uscc: str, name: str, office: str, profile: str, holder: str,
                       csr: bytes | None = None, contact: str | None = None, legal_rep: str | None = None,
                       client: str | None = None) -> dict:
    """A self-service application (no authentication): registers the enterprise if it is not
    known (a known USCC must come with its registered name and office). Returns ``{"id",
    "status", "status_token"}``; the token (shown once; only its hash is kept) polls the status."""
    uscc = check_uscc(uscc)
    name = _text(name, "the enterprise name", 64)
    office = _text(office, "the office", 64)
    profile = _text(profile, "the profile", 64)
    holder = _text(holder, "the holder", 64)
    contact = _text(contact, "the contact", 200, required=False)
    legal_rep = _text(legal_rep, "the legal representative", 100, required=False)
    csr_der = None
    if csr is not None:
        from cryptography.hazmat.primitives.serialization import Encoding

        from unica.ca.request import parse_csr

        try:
            csr_der = parse_csr(bytes(csr), "the CSR").csr.public_bytes(Encoding.DER)
        except UnicaError as e:
            raise _tag(e, office=office, target=uscc)
    token = codes.new_token()
    now = _now()
    try:
        with store.write() as s:
            off = _office_row(s, office)
            if profile not in (off.profiles or []):
                raise RegistryRefused("profile-not-allowed", f"office {office} does not issue profile {profile} "
                                                             f"(its profiles: {', '.join(off.profiles or [])})")
            ca = next((c for c in off.cas or [] if profile in (_ca_profiles(s, c) or [profile])), None)
            if ca is None:
                raise RegistryRefused("profile-not-allowed", f"no CA of office {office} issues profile {profile}")
            ent = s.scalars(select(m.Enterprise).where(m.Enterprise.uscc == uscc).with_for_update()).first()
            if ent is None or (_unverified_and_idle(s, ent) and (ent.name, ent.office) != (name, office)):
                # registered unverified: the approval of this application verifies it, a rejection
                # withdraws it (nobody can hold a USCC by applying for it under another name)
                details = {"name": name, "office": office, "legal_rep": legal_rep, "source": "self-service",
                           "client": client, "status": "pending"}
                if ent is None:
                    ent = m.Enterprise(uscc=uscc, name=name, legal_rep=legal_rep, office=office, status="pending",
                                       created_at=now)
                    s.add(ent)
                else:
                    details["replaces"] = {"name": ent.name, "office": ent.office, "status": ent.status}
                    ent.name, ent.legal_rep, ent.office, ent.status = name, legal_rep, office, "pending"
                s.flush()
                append_audit(s, "enterprise.added", target=uscc, details=details)
            else:
                if ent.name != name:
                    raise RegistryRefused("enterprise-mismatch", f"USCC {uscc} is registered under another name")
                if ent.office != office:
                    raise RegistryRefused("enterprise-mismatch",
                                          f"USCC {uscc} is registered with office {ent.office}, not {office}")
                if ent.status == "withdrawn":
                    ent.status = "pending"
                elif ent.status not in ("active", "pending"):
                    raise RegistryRefused("enterprise-disabled", f"enterprise {uscc} is {ent.status}")
            _check_profile(s, ca, profile, ent, holder)
            app = m.Application(id=_new_app_id(s), enterprise_id=ent.id, ca_name=ca, profile=profile, holder=holder,
                                source="self-service", status="submitted", csr_der=csr_der, contact=contact,
                                code_salt=codes.new_salt(), code_failures=0, code_released=False,
                                status_token_hash=codes.token_hash(token), created_at=now)
            s.add(app)
            s.flush()
            append_audit(s, "application.submitted", ca=ca, target=app.id, details={
                "uscc": uscc, "office": office, "profile": profile, "holder": holder, "source": "self-service",
                "client": client, "csr": csr_der is not None})
            return {"id": app.id, "status": app.status, "status_token": token}
    except UnicaError as e:
        raise _tag(e, office=office, target=uscc)


def _ca_profiles(s, ca: str) -> list | None:
    return s.scalar(select(m.CA.profiles).where(m.CA.name == ca))


def application_status(store: Store, app_id: str, status_token: str, *, client: str | None = None) -> dict:
    """The status of a self-service application, for the holder of its status token; after
    approval, the first poll carries ``"code"`` (made then, shown once)."""
    now = _now()
    with store.read() as s:
        app = s.get(m.Application, app_id) if _check_app_id(app_id) else None
        ent = s.get(m.Enterprise, app.enterprise_id) if app is not None else None
    if app is None or not codes.token_matches(status_token, app.status_token_hash):
        e = EnrollmentRefused("code-invalid", "the application id or the status token is wrong")
        audit_refusal(store, "application.status_refused", e, office=ent.office if ent else None, client=client,
                      target=app_id[:64] if isinstance(app_id, str) else None)
        raise e
    code = None
    fresh = app.code_expires_at is None or now <= app.code_expires_at
    if app.status == "approved" and not app.code_released and fresh:
        code = codes.new_code()
        with store.write() as s:
            done = s.execute(update(m.Application).where(
                m.Application.id == app.id, m.Application.status == "approved",
                m.Application.code_released.is_(False)).values(
                code_hash=codes.hash_code(code, app.code_salt), code_released=True))
            if done.rowcount != 1:
                code = None  # another poll released it first
            else:
                append_audit(s, "application.code_released", ca=app.ca_name, target=app.id, details={
                    "uscc": ent.uscc, "office": ent.office, "client": client, "released_to": "applicant",
                    "code_expires_at": _iso(app.code_expires_at)})
    with store.read() as s:
        info = application_info(s, s.get(m.Application, app.id), now=now)
    out = {"id": info["id"], "status": info["status"], "reason": info["reason"],
           "code_expires_at": info["code_expires_at"], "certificate_serial": info["certificate_serial"]}
    if code is not None:
        out["code"] = code
    return out


# --- the enterprise's view --------------------------------------------------------------------


def _cert_info(c: m.Certificate, ca_name: str) -> dict:
    return {"serial": c.serial, "ca": ca_name, "profile": c.profile, "status": c.status,
            "subject": c.subject_text, "not_before": c.not_before, "not_after": c.not_after,
            "fingerprint_sha256": c.fingerprint_sha256, "revoked_at": c.revoked_at,
            "revocation_reason": c.revocation_reason}


def certificate_row(s, cert_der: bytes) -> m.Certificate | None:
    """The row of exactly this certificate (by its serial, then the DER compared)."""
    from cryptography import x509

    try:
        serial = x509.load_der_x509_certificate(bytes(cert_der)).serial_number
    except (ValueError, TypeError):
        return None
    if serial <= 0:
        return None
    return s.scalars(select(m.Certificate).where(m.Certificate.serial == m.serial_hex(serial),
                                                 m.Certificate.der == bytes(cert_der))).first()


def enterprise_of_certificate(store: Store, cert_der: bytes) -> dict | None:
    """The enterprise a certificate of this database was issued to by enrollment (None: none)."""
    with store.read() as s:
        row = certificate_row(s, cert_der)
        if row is None or row.enterprise_id is None:
            return None
        return enterprise_info(s.get(m.Enterprise, row.enterprise_id))


def enterprise_certificates(store: Store, uscc: str) -> list[dict]:
    """The enterprise's certificates (issued ones: valid, on hold, revoked), newest first."""
    uscc = check_uscc(uscc)
    with store.read() as s:
        ent = _enterprise_row(s, uscc)
        rows = s.execute(select(m.Certificate, m.CA.name).join(m.CA, m.CA.id == m.Certificate.ca_id).where(
            m.Certificate.enterprise_id == ent.id, m.Certificate.status.in_(("valid", "hold", "revoked")))
            .order_by(m.Certificate.created_at.desc(), m.Certificate.id.desc())).all()
        return [_cert_info(c, ca) for c, ca in rows]


def enterprise_applications(store: Store, uscc: str) -> list[dict]:
    return list_applications(store, uscc=uscc)
