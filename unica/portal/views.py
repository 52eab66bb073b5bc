"""What the portal's role pages show and do: the enterprise's, the RA officer's and the auditor's.

Every function takes the :class:`Viewer` of the request -- who the portal session's card is, as
this service's records say now -- and calls the registry (:mod:`unica.ra`), the operators'
approvals (:mod:`unica.auth.approvals`) and the audit log (:mod:`unica.ca.auditlog`,
:mod:`unica.store.audit`) exactly as the REST API and the CLI do; no rule is written twice here.

Who sees what:

- an **enterprise** is the card's certificate as the registry binds it to an enterprise
  (:func:`unica.ra.enterprise_of_certificate`, as ``/api/v1/me`` does), else the registered
  enterprise of the login's USCC (:func:`enterprise_of`): only its own enterprise, applications,
  certificates and revocation requests;
- an **operator** is the card's certificate when it is exactly an active operator's stored
  certificate (:func:`operator_roles`). An RA officer reads their own office (an admin every
  office); every action runs with ``auth=TLSClient(card certificate)``: the card login proved
  possession of the key, and the operator check (role, office, the CA's revocation data,
  approval rules, audit) applies unchanged -- a refusal there is a refusal here;
- an **auditor** (or admin) reads the audit log with the details (operation ``audit.read``) and
  runs the chain check.

Form input is checked field by field with the registry's own checks, so a page can show each
message next to its field (:class:`FormInvalid`); what only the registry can decide (another
office, a profile the office may not use, a decision taken already) comes back as the
registry's typed error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from typing import Mapping

from unica.errors import InputError, NotAuthorized
from unica.portal.facts import LoginFacts

#: the revocation reasons an enterprise may give (certificateHold is the office's business)
REVOCATION_REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation",
                      "privilegeWithdrawn")
#: the longest text of a search box, a filter or a pasted CSR
MAX_QUERY = 64
MAX_CSR_TEXT = 16384
#: the most audit entries one page shows
AUDIT_PAGE = 200

_APP_ID = re.compile(r"^a[0-9a-f]{12}$")
_REQ_ID = re.compile(r"^v[0-9a-f]{12}$")
_APPROVAL_ID = re.compile(r"^r[0-9a-f]{12}$")
_SERIAL = re.compile(r"^[0-9a-f]{1,40}$")


class PageRefused(NotAuthorized):
    """The session's card may not see this page or act on this object (403)."""


class NotFound(InputError):
    """No such object for this viewer (404): another enterprise's objects are 'not found' too."""


@dataclass(frozen=True)
class Message:
    """A message of the portal's catalogue (:mod:`unica.portal.i18n`), for a page to put in its
    language; a plain ``str`` message is the library's own words."""

    key: str
    fields: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.key


class FormInvalid(InputError):
    """Form input refused field by field: ``errors`` maps a field name to its message (a
    :class:`Message`, or the library's words)."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


# --- who is looking ------------------------------------------------------------------------------------


def operator_of(store, cert_der: bytes) -> dict | None:
    """The active operator whose stored certificate is exactly ``cert_der`` (name, roles, office),
    or None. (Whether the certificate is still good is the session's check, at every request.)"""
    from sqlalchemy import select

    from unica.store import models as m

    if not isinstance(cert_der, (bytes, bytearray)) or not cert_der:
        return None
    with store.read() as s:
        row = s.scalars(select(m.Operator).where(m.Operator.cert_der == bytes(cert_der))).first()
        if row is None or row.status != "active":
            return None
        return {"name": row.name, "roles": tuple(row.roles or ()), "office": row.office}


def operator_roles(store, cert_der: bytes) -> tuple[str, ...]:
    """The roles of the active operator whose certificate is exactly ``cert_der`` (``()``: not an
    operator's card). For building a login's :class:`~unica.portal.facts.LoginFacts`."""
    op = operator_of(store, cert_der)
    return tuple(op["roles"]) if op else ()


@dataclass(frozen=True)
class Viewer:
    """Who a portal request is: the session's facts and card certificate, the operator it is (if
    any) and the enterprise it is bound to (if any), read at this request."""

    session_id: int
    facts: LoginFacts
    cert_der: bytes
    operator: dict | None = None
    enterprise: dict | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def roles(self) -> tuple[str, ...]:
        return (("enterprise",) if self.enterprise else ()) + tuple(self.operator["roles"] if self.operator else ())

    @property
    def auth(self):
        """The operator's authority for the library: the card's certificate, like a TLS client's."""
        from unica.auth import TLSClient

        return TLSClient(self.cert_der)

    @property
    def client(self) -> str:
        """The client as the audit names it."""
        return f"portal session {self.session_id} cert sha256:{hashlib.sha256(self.cert_der).hexdigest()}"

    @property
    def is_officer(self) -> bool:
        return bool(self.operator) and bool({"ra-officer", "admin"} & set(self.operator["roles"]))

    @property
    def is_auditor(self) -> bool:
        return bool(self.operator) and bool({"auditor", "admin"} & set(self.operator["roles"]))

    @property
    def office(self) -> str | None:
        """The office an RA officer reads (None: an admin reads every office)."""
        if self.operator and "admin" in self.operator["roles"]:
            return None
        return self.operator["office"] if self.operator else None


def viewer(store, session) -> Viewer:
    """The :class:`Viewer` of a live :class:`~unica.portal.sessions.Session`."""
    from unica.store import models as m

    with store.read() as s:
        row = s.get(m.PortalSession, session.id)
        der = bytes(row.cert_der) if row is not None else b""
    if not der:
        raise PageRefused("this session has no card certificate")
    return Viewer(session.id, session.facts, der, operator_of(store, der), enterprise_of(store, session.facts, der))


def enterprise_of(store, facts: LoginFacts, cert_der: bytes) -> dict | None:
    """The enterprise a card login acts for: the one the registry issued the certificate to
    (:func:`unica.ra.enterprise_of_certificate`, as ``/api/v1/me``), else the registered
    enterprise of the login's USCC -- the organizationIdentifier of a certificate this CA issued
    and the login verified (e.g. a card made with ``unica token enroll --uscc``); None: neither."""
    from unica import ra

    ent = ra.enterprise_of_certificate(store, cert_der)
    if ent is None and facts.uscc:
        try:
            ent = ra.get_enterprise(store, facts.uscc)
        except (InputError, ra.EnterpriseNotFound):
            return None
    return ent


def _need_enterprise(v: Viewer) -> dict:
    if not v.enterprise:
        raise PageRefused("this card's certificate names no registered enterprise of this service")
    return v.enterprise


def _need_officer(v: Viewer) -> None:
    if not v.is_officer:
        raise PageRefused("the RA pages are for RA officers (and admins): this card is not one")


def _need_auditor(v: Viewer) -> None:
    if not v.is_auditor:
        raise PageRefused("the audit pages are for auditors (and admins): this card is not one")


def _need_operator(v: Viewer) -> None:
    """Actions need an operator's card: without one (or with no operator in the database, where
    the library would let the OS user act) the portal refuses; the operator check decides the rest."""
    if not v.operator:
        raise PageRefused("only an operator's card may decide: this card is not one")


def _in_scope(v: Viewer, office: str | None, what: str) -> None:
    if v.office is not None and office != v.office:
        raise PageRefused(f"{what} belongs to office {office}; {v.operator['name']} is an officer of {v.office}")


# --- form fields ---------------------------------------------------------------------------------------


def _field(errors: dict, name: str, check, value, *args, **kw):
    """``check(value, *args, **kw)``; an InputError becomes ``errors[name]``: "required" for an
    empty value, "choose" for a value not offered, else the check's own message."""
    try:
        return check(value, *args, **kw)
    except InputError as e:
        if value is None or (isinstance(value, str) and not value.strip()):
            errors[name] = Message("form.required")
        elif check is _choice:
            errors[name] = Message("form.choose")
        else:
            errors[name] = str(e)
        return None


def _choice(value, choices, what: str) -> str:
    if value not in choices:
        raise InputError(f"choose {what}" + (f" (one of: {', '.join(choices)})" if choices else ": none available"))
    return value


def _csr_der(text) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    from unica.ca.request import parse_csr

    if not isinstance(text, str) or not text.strip():
        raise InputError("paste the PKCS#10 request (PEM) made with the key the certificate is for")
    if len(text) > MAX_CSR_TEXT:
        raise InputError(f"the request is longer than {MAX_CSR_TEXT} characters")
    try:
        return parse_csr(text.strip().encode("ascii"), "the request").csr.public_bytes(Encoding.DER)
    except UnicodeEncodeError:
        raise InputError("the request is not PEM text") from None


def _text(value, what: str, limit: int, *, required: bool = True):
    from unica.ra.registry import _text as registry_text

    return registry_text(value if value is None or isinstance(value, str) else str(value), what, limit,
                         required=required)


# --- the enterprise --------------------------------------------------------------------------------------


def agency_systems(store) -> list[dict]:
    """The agency systems a card login enters (the active OpenID Connect clients)."""
    from unica.sso.clients import list_clients

    return [{"name": c.name, "client_id": c.client_id,
             "origins": sorted({_origin(u) for u in c.redirect_uris})}
            for c in list_clients(store) if c.status == "active"]


def _origin(uri: str) -> str:
    from urllib.parse import urlsplit

    p = urlsplit(uri)
    return f"{p.scheme}://{p.netloc}"


def enterprise_overview(store, v: Viewer) -> dict:
    """The enterprise's page: itself, its applications, certificates, revocation requests and the
    agency systems it can enter."""
    from unica import ra

    ent = _need_enterprise(v)
    return {"enterprise": ent, "applications": ra.enterprise_applications(store, ent["uscc"]),
            "certificates": ra.enterprise_certificates(store, ent["uscc"]),
            "revocations": ra.list_revocation_requests(store, uscc=ent["uscc"]),
            "systems": agency_systems(store)}


def apply_choices(store, v: Viewer) -> dict:
    """What the application form offers: the profiles of the enterprise's office."""
    from unica.auth.operators import show_office

    ent = _need_enterprise(v)
    try:
        office = show_office(store, ent["office"])
    except InputError:
        office = {"profiles": []}
    return {"enterprise": ent, "profiles": list(office["profiles"])}


def apply(store, v: Viewer, form: Mapping) -> dict:
    """A self-service application of the viewer's enterprise (:func:`unica.ra.submit_application`
    with the registered USCC, name and office): ``{"id", "status", "status_token"}``."""
    from unica import ra

    choices = apply_choices(store, v)
    ent = choices["enterprise"]
    errors: dict = {}
    profile = _field(errors, "profile", _choice, form.get("profile"), choices["profiles"], "a certificate profile")
    holder = _field(errors, "holder", _text, form.get("holder"), "the holder", 64)
    contact = _field(errors, "contact", _text, form.get("contact"), "the contact", 200, required=False)
    csr = _field(errors, "csr", _csr_der, form.get("csr"))
    if errors:
        raise FormInvalid(errors)
    return ra.submit_application(store, uscc=ent["uscc"], name=ent["name"], office=ent["office"], profile=profile,
                                 holder=holder, csr=csr, contact=contact, client=v.client)


def _own_application(store, v: Viewer, app_id) -> dict:
    from unica import ra

    ent = _need_enterprise(v)
    if not isinstance(app_id, str) or not _APP_ID.match(app_id):
        raise NotFound(f"no application {str(app_id)[:20]!r}")
    try:
        app = ra.get_application(store, app_id)
    except ra.ApplicationNotFound:
        raise NotFound(f"no application {app_id}") from None
    if app["uscc"] != ent["uscc"]:
        raise NotFound(f"no application {app_id}")  # another enterprise's: not told apart from none
    return app


def enterprise_application(store, v: Viewer, app_id) -> dict:
    return _own_application(store, v, app_id)


def collect(store, v: Viewer, app_id, status_token, *, issuer) -> dict:
    """Take the certificate of an approved application of the viewer's enterprise: the status
    token releases the one-time code (:func:`unica.ra.application_status`), which enrolls the
    request sent with the application (:func:`unica.ra.enroll`, ``issuer``: the application's
    CA). ``{"serial", "ca"}``; or ``{"code"}`` for an application sent without a request."""
    from sqlalchemy import select

    from unica import ra
    from unica.store import models as m

    app = _own_application(store, v, app_id)
    errors: dict = {}
    token = _field(errors, "status_token", _text, status_token, "the status token", 128)
    if errors:
        raise FormInvalid(errors)
    status = ra.application_status(store, app["id"], token, client=v.client)
    if status["status"] == "enrolled":
        return {"serial": status["certificate_serial"], "ca": app["ca"]}
    if status["status"] != "approved":
        raise FormInvalid({"status_token": f"application {app['id']} is {status['status']}"
                                           + (f": {status['reason']}" if status.get("reason") else "")})
    code = status.get("code")
    if code is None:
        raise FormInvalid({"status_token": f"the code of application {app['id']} was released already: "
                                           "enroll with it (EST) or ask the office for a new application"})
    with store.read() as s:
        csr = s.scalar(select(m.Application.csr_der).where(m.Application.id == app["id"]))
    if csr is None:
        return {"code": code, "id": app["id"]}
    issued = ra.enroll(store, app["id"], code, bytes(csr), issuer=issuer, client=v.client)
    return {"serial": issued.serial_hex, "ca": issued.ca}


def _own_certificate(store, v: Viewer, serial) -> dict:
    from unica import ra

    ent = _need_enterprise(v)
    want = str(serial or "").lower().removeprefix("0x").lstrip("0") or "0"
    if not _SERIAL.match(want):
        raise NotFound("no such certificate")
    for c in ra.enterprise_certificates(store, ent["uscc"]):
        if c["serial"].lower().lstrip("0") == want:
            return c
    raise NotFound(f"enterprise {ent['uscc']} has no certificate with serial {serial}")


def certificate_pem(store, v: Viewer, serial) -> tuple[str, str]:
    """(file name, PEM text: the certificate, then its CAs) of one of the enterprise's certificates."""
    from unica.ca.certs import export_cert

    c = _own_certificate(store, v, serial)
    return f"{c['serial']}.pem", export_cert(store, c["serial"], c["ca"], chain=True)


def request_revocation(store, v: Viewer, form: Mapping) -> dict:
    """The enterprise asks to revoke one of its certificates (:func:`unica.ra.request_revocation`,
    the card's certificate as the requester). keyCompromise: revoked at once."""
    from unica import ra

    errors: dict = {}
    cert = _field(errors, "serial", _own_certificate_field, form.get("serial"), store, v)
    reason = _field(errors, "reason", _choice, form.get("reason"), REVOCATION_REASONS, "a reason")
    if errors:
        raise FormInvalid(errors)
    return ra.request_revocation(store, cert_serial=cert["serial"], ca=cert["ca"], reason=reason,
                                 requester_cert_der=v.cert_der, client=v.client)


def _own_certificate_field(serial, store, v):
    try:
        return _own_certificate(store, v, serial)
    except NotFound as e:
        raise InputError(str(e)) from None


# --- the RA officer --------------------------------------------------------------------------------------


def approvals_waiting(store, v: Viewer) -> list[dict]:
    """Requests under dual control this operator may approve now (pending, not decided by them,
    their role counts) -- by :mod:`unica.auth.approvals`' own test. The approval itself is signed
    with the card on the command line (``unica approval approve ID --as ...``): the portal's
    agent signs login challenges only."""
    from sqlalchemy import select

    from unica.auth.approvals import _decision_problem, request_info
    from unica.store import models as m

    if not v.operator:
        return []
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    with store.read() as s:
        op = s.scalars(select(m.Operator).where(m.Operator.cert_der == v.cert_der)).first()
        if op is None:
            return []
        for row in s.scalars(select(m.ApprovalRequest).where(m.ApprovalRequest.status == "pending")
                             .order_by(m.ApprovalRequest.created_at)):
            if _decision_problem(s, row, op, now) is None:
                out.append(request_info(s, row, now))
    return out


def ra_queue(store, v: Viewer) -> dict:
    """The office's queue: applications waiting for a decision, pending revocation requests, and
    the dual-control requests waiting for this officer."""
    from unica import ra

    _need_officer(v)
    return {"office": v.office, "operator": v.operator,
            "applications": ra.list_applications(store, office=v.office, status="submitted"),
            "revocations": ra.list_revocation_requests(store, office=v.office, status="pending"),
            "approvals": approvals_waiting(store, v)}


def _query(value) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value, "the search", MAX_QUERY)


def ra_lookup(store, v: Viewer, query) -> list[dict]:
    """Enterprises of the officer's office whose name or USCC contains ``query``."""
    from unica import ra

    _need_officer(v)
    errors: dict = {}
    q = _field(errors, "q", _query, query)
    if errors:
        raise FormInvalid(errors)
    return ra.list_enterprises(store, office=v.office, query=q, limit=100) if q else []


def ra_enterprise(store, v: Viewer, uscc) -> dict:
    from unica import ra

    _need_officer(v)
    try:
        ent = ra.get_enterprise(store, uscc)
    except (InputError, ra.EnterpriseNotFound):
        raise NotFound(f"no enterprise {str(uscc)[:24]!r}") from None
    _in_scope(v, ent["office"], f"enterprise {ent['uscc']}")
    return {"enterprise": ent, "applications": ra.enterprise_applications(store, ent["uscc"]),
            "certificates": ra.enterprise_certificates(store, ent["uscc"])}


def _application(store, app_id) -> dict:
    from unica import ra

    if not isinstance(app_id, str) or not _APP_ID.match(app_id):
        raise NotFound(f"no application {str(app_id)[:20]!r}")
    try:
        return ra.get_application(store, app_id)
    except ra.ApplicationNotFound:
        raise NotFound(f"no application {app_id}") from None


def ra_application(store, v: Viewer, app_id) -> dict:
    _need_officer(v)
    app = _application(store, app_id)
    _in_scope(v, app["office"], f"application {app_id}")
    return app


def ra_decide(store, v: Viewer, app_id, form: Mapping) -> dict:
    """Approve or reject an application (a rejection needs a reason) as the officer
    (:func:`unica.ra.decide_application`); the dict carries ``"code"`` (shown once) when this
    decision completed the quorum of an officer's application. Who may decide is the registry's
    and the operator check's business (a refusal there is audited), not this page's."""
    from unica import ra

    _need_operator(v)
    _application(store, app_id)
    errors: dict = {}
    decision = _field(errors, "decision", _choice, form.get("decision"), ("approve", "reject"), "approve or reject")
    reason = _field(errors, "reason", _text, form.get("reason"), "the reason", 500, required=decision == "reject")
    if errors:
        raise FormInvalid(errors)
    return ra.decide_application(store, app_id, approve=decision == "approve", reason=reason, auth=v.auth)


def ra_decide_revocation(store, v: Viewer, req_id, form: Mapping) -> dict:
    """Revoke (approve) or decline (reject, with a reason) an enterprise's revocation request
    (:func:`unica.ra.decide_revocation`, the operator check deciding who may)."""
    from unica import ra

    _need_operator(v)
    if not isinstance(req_id, str) or not _REQ_ID.match(req_id):
        raise NotFound(f"no revocation request {str(req_id)[:20]!r}")
    try:
        ra.get_revocation_request(store, req_id)
    except ra.RevocationRequestNotFound:
        raise NotFound(f"no revocation request {req_id}") from None
    errors: dict = {}
    decision = _field(errors, "decision", _choice, form.get("decision"), ("approve", "reject"), "approve or reject")
    reason = _field(errors, "reason", _text, form.get("reason"), "the reason", 500, required=decision == "reject")
    if errors:
        raise FormInvalid(errors)
    return ra.decide_revocation(store, req_id, decision == "approve", reason, auth=v.auth)


def code_choices(store, v: Viewer) -> dict:
    """What the enrollment-code form offers: the profiles of the officer's office."""
    from unica.auth.operators import list_offices

    _need_officer(v)
    offices = [o for o in list_offices(store) if v.office is None or o["name"] == v.office]
    return {"profiles": sorted({p for o in offices for p in o["profiles"]})}


def ra_issue_code(store, v: Viewer, form: Mapping) -> dict:
    """An officer's application for a holder of an enterprise (:func:`unica.ra.create_application`):
    the enrollment code comes back (``"code"``, shown once) when the creator's approval is the
    quorum; else the application waits for another officer, who gets the code."""
    from unica import ra
    from unica.ra.registry import check_uscc

    choices = code_choices(store, v)
    errors: dict = {}
    uscc = _field(errors, "uscc", check_uscc, form.get("uscc") or "")
    profile = _field(errors, "profile", _choice, form.get("profile"), choices["profiles"], "a certificate profile")
    holder = _field(errors, "holder", _text, form.get("holder"), "the holder", 64)
    if uscc and "uscc" not in errors:
        try:
            ent = ra.get_enterprise(store, uscc)
        except ra.EnterpriseNotFound as e:
            errors["uscc"] = str(e)
        else:
            if v.office is not None and ent["office"] != v.office:
                errors["uscc"] = f"enterprise {uscc} belongs to office {ent['office']}, not {v.office}"
    if errors:
        raise FormInvalid(errors)
    return ra.create_application(store, uscc=uscc, profile=profile, holder=holder, auth=v.auth)


# --- the auditor -----------------------------------------------------------------------------------------


def _since(value) -> dt.datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = _text(value, "the date", 40)
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError("a date (2026-11-30) or a time (2026-11-30T08:00:00Z)") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def _filter(value, what: str):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value, what, MAX_QUERY)


def audit_view(store, v: Viewer, filters: Mapping) -> dict:
    """Audit entries, newest first, with their details (operation ``audit.read``: an auditor or an
    admin; anyone else is refused and the refusal audited)."""
    from unica.ca.auditlog import entries

    _need_auditor(v)
    errors: dict = {}
    since = _field(errors, "since", _since, filters.get("since"))
    event = _field(errors, "event", _filter, filters.get("event"), "the event")
    ca = _field(errors, "ca", _filter, filters.get("ca"), "the CA")
    actor = _field(errors, "actor", _filter, filters.get("actor"), "the actor")
    if errors:
        raise FormInvalid(errors)
    rows, full = entries(store, auth=v.auth, since=since, event=event, ca=ca, actor=actor, limit=AUDIT_PAGE,
                         newest_first=True)
    return {"entries": rows, "full": full, "limit": AUDIT_PAGE}


def audit_check(store, v: Viewer) -> dict:
    """The chain check (:func:`unica.store.audit.verify_audit`): every changed, missing, inserted
    entry and bad seal named."""
    from unica.ca.auditlog import details_allowed
    from unica.store.audit import verify_audit

    _need_auditor(v)
    details_allowed(store, v.auth)  # operation audit.read: the library's check, audited when refused
    return verify_audit(store).to_dict()


__all__ = ["AUDIT_PAGE", "FormInvalid", "Message", "NotFound", "PageRefused", "REVOCATION_REASONS", "Viewer",
           "agency_systems", "apply", "apply_choices", "approvals_waiting", "audit_check", "audit_view",
           "certificate_pem", "code_choices", "collect", "enterprise_application", "enterprise_of",
           "enterprise_overview", "operator_of", "operator_roles", "ra_application", "ra_decide",
           "ra_decide_revocation", "ra_enterprise", "ra_issue_code", "ra_lookup", "ra_queue", "request_revocation",
           "viewer"]
