"""The REST API under ``/api/v1``: enterprises, applications and revocation requests.

Three kinds of client, told apart by how they authenticate:

- an **RA officer** presents their operator certificate in the TLS handshake; every
  state-changing call runs under the operator check with ``auth=TLSClient(cert_der)``
  (role, office scope, the CA's own revocation data); reads are scoped to the officer's office
  (an admin sees every office);
- an **enterprise** without a certificate applies on its own (self-service) and polls its
  application with the status token it was given once;
- an **enterprise** with a certificate presents it in the TLS handshake (``/me/...``), or signs
  a revocation request with its card (CMS SignedData, ``POST /revocation-requests``).

Handlers stay thin: they check the input, call :mod:`unica.ra`, and return JSON. Every error
is an RFC 9457 problem (:mod:`unica.service.problems`); library errors are mapped there. The
refusals this module finds itself (a malformed body, a bad USCC, another office, a bad or
replayed signed request) are audited here as ``api.refused`` with the office and the client;
the library audits its own. Responses that carry a secret shown once (an enrollment code, a
status token) say ``Cache-Control: no-store``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import inspect
import json
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from unica import ra
from unica.errors import CertificateNotFound, MalformedInput, VerificationError
from unica.policies.uscc import USCCError, validate_uscc
from unica.service import identity
from unica.service.problems import Problem

#: how far the ``time`` of a signed revocation request may be from the server's clock
CMS_TIME_WINDOW = dt.timedelta(minutes=5)
#: the media types a CMS-signed revocation request may be sent as
CMS_TYPES = ("application/pkcs7-mime", "application/cms")
#: RFC 8555 section 9.1: a certificate followed by its chain, PEM
PEM_CHAIN = "application/pem-certificate-chain"

Reason = Literal["unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation",
                 "privilegeWithdrawn"]
_APP_ID = r"^a[0-9a-f]{12}$"
_REQ_ID = r"^v[0-9a-f]{12}$"


# --- refusals found here: audited, then a problem ---------------------------------------------------


def _client_text(client: Any) -> str:
    """The client as the audit log names it: its address and, with a certificate, its SHA-256."""
    if client is None:
        return "unknown"
    addr = getattr(client, "address", None) or "-"
    der = getattr(client, "cert_der", None)
    return f"{addr} cert sha256:{hashlib.sha256(der).hexdigest()}" if der else str(addr)


async def _maybe(value):
    return await value if inspect.isawaitable(value) else value


async def _checked(fn, request: Request):
    """An identity check (it reads the database: off the event loop)."""
    return await _maybe(await run_in_threadpool(fn, request))


async def _client(request: Request):
    try:
        return identity.client_of(request.scope, request.app.state.settings)
    except Exception:  # noqa: BLE001 -- the identity layer refuses on its own; here it only names the client
        return None


def _office_of_client(store, client) -> str | None:
    """The office the client belongs to, for the audit: the operator's, or the enterprise's."""
    der = getattr(client, "cert_der", None)
    if not der:
        return None
    op = _operator_row(store, der)
    if op is not None:
        return op["office"]
    try:
        ent = ra.enterprise_of_certificate(store, der)
    except Exception:  # noqa: BLE001 -- best effort: the audit entry is written either way
        ent = None
    return ent.get("office") if ent else None


def _audit_refusal(store, request: Request, client, slug: str, detail: str, *, office: str | None = None,
                   target: str | None = None, signer: bytes | None = None) -> None:
    if office is None:
        office = _office_of_client(store, client)
    who = _client_text(client)
    if signer is not None:
        who += f" cms signer sha256:{hashlib.sha256(signer).hexdigest()}"
    with store.write() as s:
        store.audit(s, "api.refused", target=target or request.url.path,
                    details={"slug": slug, "detail": detail[:500], "office": office, "client": who,
                             "method": request.method, "path": request.url.path})


async def _refuse(request: Request, status: int, slug: str, title: str, detail: str, *,
                  office: str | None = None, target: str | None = None, signer: bytes | None = None) -> Problem:
    """Audit the refusal (with the office and the client; for a signed request also its signer's
    certificate) and return the problem to raise."""
    client = await _client(request)
    store = request.app.state.store
    await run_in_threadpool(_audit_refusal, store, request, client, slug, detail, office=office, target=target,
                            signer=signer)
    return Problem(status, slug, title, detail)


def _validation_detail(e: RequestValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request does not match its schema"


class _AuditedRoute(APIRoute):
    """A route whose malformed requests (body, query, path, headers) are audited and answered
    as a ``malformed`` problem (400), like every other refusal."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def audited(request: Request):
            try:
                return await handler(request)
            except RequestValidationError as e:
                raise await _refuse(request, 400, "malformed", "Malformed request", _validation_detail(e)) from None
            except _REGISTRY_ERRORS as e:  # audited by the registry already: only the answer is made here
                raise _registry_problem(e) from None

        return audited


_NOT_FOUND = (ra.EnterpriseNotFound, ra.ApplicationNotFound, ra.RevocationRequestNotFound)
_REGISTRY_ERRORS = (ra.RegistryConflict, ra.RegistryRefused, *_NOT_FOUND)


def _registry_problem(e: Exception) -> Problem:
    """The registry's refusals keep their own slug: 409 for a conflict with its state (registered
    already, decided already), 404 for what does not exist, 403 for the rest; an enrollment
    refusal goes to the service's mapping (401/403 by slug)."""
    detail = str(e).strip().splitlines()[0][:500] if str(e).strip() else type(e).__name__
    if isinstance(e, ra.EnrollmentRefused):
        from unica.service.problems import from_exception

        return from_exception(e)
    if isinstance(e, _NOT_FOUND):
        return Problem(404, "not-found", "Not found", detail)
    if isinstance(e, ra.RegistryConflict):
        return Problem(409, e.slug, "Conflicts with the registry", detail)
    return Problem(403, e.slug, "Refused by the registry", detail)


router = APIRouter(route_class=_AuditedRoute)


# --- who is asking ------------------------------------------------------------------------------------


def _operator_row(store, cert_der: bytes) -> dict | None:
    """The active operator whose stored certificate is exactly ``cert_der`` (for read scoping)."""
    from sqlalchemy import select

    from unica.store import models as m

    with store.read() as s:
        row = s.execute(select(m.Operator).where(m.Operator.cert_der == cert_der)).scalar_one_or_none()
        if row is None or row.status != "active":
            return None
        return {"name": row.name, "roles": list(row.roles or []), "office": row.office}


async def _officer(request: Request) -> tuple[bytes, dict]:
    """The operator certificate of the TLS client (validated by the identity layer) and the
    operator it names; only admins and RA officers read the registry."""
    der = await _checked(identity.require_operator, request)
    op = await run_in_threadpool(_operator_row, request.app.state.store, der)
    if op is None or not ({"admin", "ra-officer"} & set(op["roles"])):
        who = op["name"] if op else "the client"
        raise await _refuse(request, 403, "not-authorized", "Not authorized",
                            f"{who} is not an active admin or RA officer", office=op["office"] if op else None)
    return der, op


async def _scope(request: Request, op: dict, office: str | None, what: str) -> None:
    """An RA officer sees only their own office; an admin sees all."""
    if "admin" in op["roles"] or office is None or office == op["office"]:
        return
    raise await _refuse(request, 403, "not-authorized", "Not authorized",
                        f"{what} belongs to office {office!r}; {op['name']} is an officer of {op['office']!r}",
                        office=op["office"])


def _tls_client(der: bytes):
    from unica.auth import TLSClient

    return TLSClient(der)


async def _uscc(request: Request, value: str, *, office: str | None = None) -> str:
    try:
        return validate_uscc(value)
    except USCCError as e:
        raise await _refuse(request, 400, "uscc-invalid", "Invalid Unified Social Credit Code", str(e),
                            office=office) from None


def _lib(fn, *args, **kw):
    """Run a (blocking) library call off the event loop."""
    return run_in_threadpool(fn, *args, **kw)


# --- models ---------------------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EnterpriseIn(_In):
    uscc: str = Field(min_length=18, max_length=24, description="Unified Social Credit Code (check character verified)")
    name: str = Field(min_length=1, max_length=64, description="the registered name (subject O)")
    legal_rep: str | None = Field(default=None, max_length=100, description="legal representative")
    office: str = Field(min_length=1, max_length=64, description="the RA office the enterprise belongs to")


class Enterprise(_Out):
    uscc: str
    name: str
    legal_rep: str | None = None
    office: str
    status: str
    created_at: dt.datetime | None = None


class ApplicationIn(_In):
    uscc: str = Field(min_length=18, max_length=24)
    profile: str = Field(min_length=1, max_length=64, description="the certificate profile, e.g. enterprise-sign")
    holder: str = Field(min_length=1, max_length=64, description="the holder's name (subject CN)")
    ca: str | None = Field(default=None, max_length=64, description="the issuing CA (default: the office's)")


class SelfServiceIn(_In):
    uscc: str = Field(min_length=18, max_length=24)
    name: str = Field(min_length=1, max_length=64)
    office: str = Field(min_length=1, max_length=64)
    profile: str = Field(min_length=1, max_length=64)
    holder: str = Field(min_length=1, max_length=64)
    legal_rep: str | None = Field(default=None, max_length=100)
    contact: str | None = Field(default=None, max_length=200, description="how the office reaches the applicant")
    csr: str | None = Field(default=None, max_length=16384, description="PKCS#10 request, PEM (optional)")

    @field_validator("csr")
    @classmethod
    def _pem_csr(cls, v: str | None) -> str | None:
        if v is not None and "-----BEGIN CERTIFICATE REQUEST-----" not in v:
            raise ValueError("csr must be a PEM PKCS#10 request (-----BEGIN CERTIFICATE REQUEST-----)")
        return v


class Application(_Out):
    id: str
    uscc: str | None = None
    enterprise: str | None = Field(default=None, description="the enterprise's name")
    office: str | None = None
    ca: str | None = None
    profile: str
    holder: str
    source: str
    status: str
    reason: str | None = None
    contact: str | None = None
    approvals: int | None = Field(default=None, description="approvals so far")
    needed: int | None = Field(default=None, description="approvals the profile's rule needs")
    code_expires_at: dt.datetime | None = None
    certificate_serial: str | None = None
    created_at: dt.datetime | None = None
    decided_at: dt.datetime | None = None


class ApplicationCreated(Application):
    code: str | None = Field(default=None, description="the one-time enrollment code: shown once, only when "
                                                         "the application is approved by this call")


class SelfServiceCreated(_Out):
    id: str
    status: str
    status_token: str = Field(description="the token to poll the status with (Authorization: Bearer); shown once")


class ApplicationStatus(_Out):
    id: str
    status: str
    reason: str | None = None
    code_expires_at: dt.datetime | None = None
    code: str | None = Field(default=None, description="the one-time enrollment code, given exactly once after "
                                                         "approval")


class DecisionIn(_In):
    approve: bool
    reason: str = Field(default="", max_length=500, description="why (required to reject)")


class Certificate(_Out):
    serial: str
    ca: str | None = None
    profile: str | None = None
    status: str
    subject: str | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    fingerprint_sha256: str | None = None
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None


class RevocationIn(_In):
    serial: str = Field(min_length=1, max_length=42, pattern=r"^(0x)?[0-9A-Fa-f]{1,40}$",
                        description="the certificate's serial number, hex")
    reason: Reason


class RevocationRequest(_Out):
    id: str
    serial: str | None = None
    ca: str | None = None
    uscc: str | None = None
    office: str | None = None
    reason: str
    status: str
    client: str | None = None
    created_at: dt.datetime | None = None
    decided_at: dt.datetime | None = None


class SignedRevocation(BaseModel):
    """The JSON content a card signs (CMS SignedData, encapsulated) to ask for revocation."""

    model_config = ConfigDict(extra="forbid")
    serial: str = Field(pattern=r"^(0x)?[0-9A-Fa-f]{1,40}$")
    reason: Reason
    nonce: str = Field(pattern=r"^[A-Za-z0-9_\-+/=]{16,64}$", description="16 to 64 characters, never reused")
    time: dt.datetime = Field(description="RFC 3339 with offset; within 5 minutes of the server's clock")


_PROBLEM = {"content": {"application/problem+json": {}}, "description": "RFC 9457 problem details"}


def _errors(*codes: int) -> dict:
    return {c: _PROBLEM for c in codes}


def _app(d: dict) -> dict:
    """An application dict as the library gives it, with the field names the API uses."""
    d = dict(d)
    d.setdefault("ca", d.get("ca_name"))
    return d


# --- RA officers: enterprises ----------------------------------------------------------------------------


@router.post("/enterprises", status_code=201, response_model=Enterprise, tags=["registration"],
             summary="Register an enterprise (RA officer)", responses=_errors(400, 403, 409))
async def register_enterprise(request: Request, body: EnterpriseIn):
    der, _ = await _officer(request)  # the registry checks role and office (audited as auth.refused)
    uscc = await _uscc(request, body.uscc)
    return await _lib(ra.add_enterprise, request.app.state.store, uscc=uscc, name=body.name, office=body.office,
                      legal_rep=body.legal_rep, auth=_tls_client(der))


@router.get("/enterprises", response_model=list[Enterprise], tags=["registration"],
            summary="Find enterprises (RA officer: their office)", responses=_errors(400, 403))
async def find_enterprises(request: Request,
                           uscc: Annotated[str | None, Query(max_length=24)] = None,
                           q: Annotated[str | None, Query(max_length=100, description="part of the name")] = None):
    _, op = await _officer(request)
    office = None if "admin" in op["roles"] else op["office"]
    store = request.app.state.store
    if uscc is not None:
        code = await _uscc(request, uscc)
        try:
            ent = await _lib(ra.get_enterprise, store, code)
        except Exception as e:  # noqa: BLE001 -- none found is an empty list, any other error propagates
            if _is_not_found(e):
                return []
            raise
        return [ent] if office is None or ent.get("office") == office else []
    return await _lib(ra.list_enterprises, store, office=office, query=q)


@router.get("/enterprises/{uscc}", response_model=Enterprise, tags=["registration"],
            summary="One enterprise (RA officer)", responses=_errors(400, 403, 404))
async def show_enterprise(request: Request, uscc: Annotated[str, Path(max_length=24)]):
    _, op = await _officer(request)
    code = await _uscc(request, uscc)
    ent = await _lib(ra.get_enterprise, request.app.state.store, code)
    await _scope(request, op, ent.get("office"), f"enterprise {code}")
    return ent


def _is_not_found(e: Exception) -> bool:
    return type(e).__name__.endswith("NotFound") or getattr(e, "status", None) == 404


# --- RA officers: applications --------------------------------------------------------------------------


@router.post("/applications", status_code=201, response_model=ApplicationCreated, tags=["registration"],
             summary="Create an application for a profile and a holder (RA officer)",
             description="The creating officer's decision is the first approval. When the profile's rule needs "
                         "no more, the application is approved at once and the response carries the one-time "
                         "enrollment code, shown this once (only a salted hash is stored).",
             responses=_errors(400, 403, 404))
async def create_application(request: Request, response: Response, body: ApplicationIn):
    der, op = await _officer(request)
    uscc = await _uscc(request, body.uscc)
    app = await _lib(ra.create_application, request.app.state.store, uscc=uscc, profile=body.profile,
                     holder=body.holder, ca=body.ca, auth=_tls_client(der))
    response.headers["Cache-Control"] = "no-store"
    return _app(app)


@router.get("/applications", response_model=list[Application], tags=["registration"],
            summary="Applications of an office (RA officer: their own)", responses=_errors(400, 403))
async def list_applications(request: Request,
                            status: Annotated[Literal["submitted", "approved", "rejected", "enrolled", "expired"] | None,
                                              Query()] = None,
                            office: Annotated[str | None, Query(max_length=64)] = None,
                            uscc: Annotated[str | None, Query(max_length=24)] = None):
    _, op = await _officer(request)
    if office is not None:
        await _scope(request, op, office, "the queue")
    elif "admin" not in op["roles"]:
        office = op["office"]
    if uscc is not None:
        uscc = await _uscc(request, uscc)
    apps = await _lib(ra.list_applications, request.app.state.store, office=office, uscc=uscc, status=status)
    return [_app(a) for a in apps]


@router.get("/applications/{app_id}", response_model=Application, tags=["registration"],
            summary="One application (RA officer)", responses=_errors(400, 403, 404))
async def show_application(request: Request, app_id: Annotated[str, Path(pattern=_APP_ID)]):
    _, op = await _officer(request)
    app = await _lib(ra.get_application, request.app.state.store, app_id)
    await _scope(request, op, app.get("office"), f"application {app_id}")
    return _app(app)


@router.post("/applications/{app_id}/decision", response_model=ApplicationCreated, tags=["registration"],
             summary="Approve or reject an application (RA officer of its office; dual control per profile)",
             description="Distinct officers approve until the profile's rule (e.g. cert.issue:enterprise-sign, 2) "
                         "is met. The decision that completes it releases the code: in this response for an "
                         "officer's application; to a self-service applicant, once, through its status poll. A "
                         "rejection needs a reason and ends it.",
             responses=_errors(400, 403, 404, 409))
async def decide_application(request: Request, response: Response, app_id: Annotated[str, Path(pattern=_APP_ID)],
                             body: DecisionIn):
    der, op = await _officer(request)
    if not body.approve and not body.reason:
        raise await _refuse(request, 400, "malformed", "Malformed request", "a rejection needs a reason",
                            office=op["office"], target=app_id)
    app = await _lib(ra.decide_application, request.app.state.store, app_id, approve=body.approve,
                     reason=body.reason, auth=_tls_client(der))
    response.headers["Cache-Control"] = "no-store"
    return _app(app)


# --- self-service ------------------------------------------------------------------------------------------


@router.post("/applications/self-service", status_code=201, response_model=SelfServiceCreated,
             tags=["self-service"], summary="Apply for a certificate without one (enterprise)",
             description="Registers the enterprise if it is unknown to the office (a known USCC must come with "
                         "its registered name). The application waits for the office's decision; poll "
                         "GET /applications/{id}/status with the status token, which is shown once.",
             responses=_errors(400, 403, 404, 409))
async def self_service(request: Request, response: Response, body: SelfServiceIn):
    uscc = await _uscc(request, body.uscc, office=body.office)
    client = _client_text(await _client(request))
    csr = body.csr.encode("utf-8") if body.csr is not None else None  # checked by the registry (audited)
    out = await _lib(ra.submit_application, request.app.state.store, uscc=uscc, name=body.name,
                     office=body.office, profile=body.profile, holder=body.holder, csr=csr, contact=body.contact,
                     legal_rep=body.legal_rep, client=client)
    response.headers["Cache-Control"] = "no-store"
    return out


def _office_of_application(store, app_id: str) -> str | None:
    try:
        return ra.get_application(store, app_id).get("office")
    except Exception:  # noqa: BLE001 -- no such application: the refusal names no office
        return None


_BEARER = re.compile(r"^Bearer ([A-Za-z0-9_\-.~+/=]{16,200})$")


@router.get("/applications/{app_id}/status", response_model=ApplicationStatus, tags=["self-service"],
            summary="The status of a self-service application (status token)",
            description="Authorization: Bearer <status token>. After approval the response carries the one-time "
                        "enrollment code exactly once; later polls show the status only.",
            responses=_errors(400, 401, 404))
async def application_status(request: Request, response: Response, app_id: Annotated[str, Path(pattern=_APP_ID)],
                             authorization: Annotated[str | None, Header()] = None):
    store = request.app.state.store
    m = _BEARER.match(authorization or "")
    if not m:
        office = await _lib(_office_of_application, store, app_id)
        problem = await _refuse(request, 401, "status-token", "Status token required",
                                "send the status token as 'Authorization: Bearer <token>'", office=office,
                                target=app_id)
        problem.headers = {"WWW-Authenticate": "Bearer"}
        raise problem
    client = _client_text(await _client(request))
    try:
        out = await _lib(ra.application_status, store, app_id, m.group(1), client=client)
    except ra.EnrollmentRefused as e:  # audited by the registry, with the office and the client
        raise Problem(401, "status-token", "Status token refused", str(e), headers={"WWW-Authenticate": "Bearer"}) \
            from None
    response.headers["Cache-Control"] = "no-store"
    return out


# --- the enterprise, over mTLS with its certificate ------------------------------------------------------


async def _enterprise(request: Request) -> tuple[bytes, dict]:
    der, ent = await _checked(identity.require_enterprise, request)
    return der, ent


@router.get("/me", response_model=Enterprise, tags=["enterprise"], summary="The enterprise of the client certificate",
            responses=_errors(401, 403))
async def me(request: Request):
    return (await _enterprise(request))[1]


@router.get("/me/certificates", response_model=list[Certificate], tags=["enterprise"],
            summary="The enterprise's certificates", responses=_errors(401, 403))
async def my_certificates(request: Request):
    _, ent = await _enterprise(request)
    return await _lib(ra.enterprise_certificates, request.app.state.store, ent["uscc"])


@router.get("/me/applications", response_model=list[Application], tags=["enterprise"],
            summary="The enterprise's applications", responses=_errors(401, 403))
async def my_applications(request: Request):
    _, ent = await _enterprise(request)
    return [_app(a) for a in await _lib(ra.enterprise_applications, request.app.state.store, ent["uscc"])]


def _norm_serial(text: str) -> str:
    t = text[2:] if text.lower().startswith("0x") else text
    return t.lstrip("0").lower() or "0"


async def _own_certificate(request: Request, ent: dict, serial: str) -> dict:
    certs = await _lib(ra.enterprise_certificates, request.app.state.store, ent["uscc"])
    want = _norm_serial(serial)
    for c in certs:
        if _norm_serial(c["serial"]) == want:
            return c
    raise await _refuse(request, 404, "not-found", "No such certificate",
                        f"enterprise {ent['uscc']} has no certificate with serial {serial}", office=ent.get("office"))


@router.get("/me/certificates/{serial}", tags=["enterprise"],
            summary="One of the enterprise's certificates with its chain (PEM)",
            responses={200: {"content": {PEM_CHAIN: {"schema": {"type": "string"}}},
                             "description": "the certificate, then its issuing CAs up to the root (RFC 8555 9.1)"},
                       **_errors(401, 403, 404, 406)},
            response_class=Response)
async def my_certificate(request: Request, serial: Annotated[str, Path(pattern=r"^(0x)?[0-9A-Fa-f]{1,40}$")]):
    _, ent = await _enterprise(request)
    accept = request.headers.get("accept", "*/*")
    if not any(t.split(";")[0].strip() in (PEM_CHAIN, "application/*", "*/*", "application/x-pem-file")
               for t in accept.split(",")):
        raise Problem(406, "not-acceptable", "Not acceptable", f"this resource is {PEM_CHAIN}")
    cert = await _own_certificate(request, ent, serial)
    from unica.ca.certs import export_cert

    try:
        text = await _lib(export_cert, request.app.state.store, cert["serial"], cert.get("ca"), chain=True)
    except CertificateNotFound as e:
        raise Problem(404, "not-found", "No such certificate", str(e)) from None
    return Response(text, media_type=PEM_CHAIN)


@router.post("/me/revocation-requests", status_code=201, response_model=RevocationRequest, tags=["enterprise"],
             summary="Ask for revocation of one of the enterprise's certificates",
             description="keyCompromise revokes at once (201, status done); other reasons wait for the office "
                         "(202, status pending) unless its rule says otherwise.",
             responses={202: {"model": RevocationRequest, "description": "pending the office's decision"},
                        **_errors(400, 401, 403, 404, 409)})
async def my_revocation_request(request: Request, response: Response, body: RevocationIn):
    der, ent = await _enterprise(request)
    cert = await _own_certificate(request, ent, body.serial)
    client = _client_text(await _client(request))
    out = await _lib(ra.request_revocation, request.app.state.store, cert_serial=cert["serial"], ca=cert.get("ca"),
                     reason=body.reason, requester_cert_der=der, client=client)
    if out.get("status") == "pending":
        response.status_code = 202
    return out


# --- a revocation request signed with the card (CMS) -------------------------------------------------------


def _cms_bytes(body: bytes) -> bytes:
    """DER as sent, or the base64 / PEM (S/MIME style) form of it."""
    if body[:1] == b"\x30":
        return body
    text = body.strip()
    if text.startswith(b"-----BEGIN"):
        lines = [ln for ln in text.splitlines() if ln and not ln.startswith(b"-----")]
        text = b"".join(lines)
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedInput("the body is not a CMS SignedData (DER, PEM or base64)") from None


def _ca_certs(store) -> list[bytes]:
    from sqlalchemy import select

    from unica.store import models as m

    with store.read() as s:
        return [d for (d,) in s.execute(select(m.CA.cert_der).where(m.CA.cert_der.is_not(None))).all()]


def _verify_signed_request(store, raw: bytes) -> tuple[bytes, SignedRevocation]:
    """Check the CMS signature and chain (to a CA of this database; revocation status is the
    library's business, from the CA's rows) and parse the signed JSON. Raises MalformedInput for
    what is not a signed request, VerificationError for a signature that does not verify."""
    from unica.verify import OFF, Verifier
    from unica.verify.cms import parse_signed_data

    try:
        sd = parse_signed_data(raw)
    except (MalformedInput, VerificationError, ValueError) as e:
        raise MalformedInput(f"not a CMS SignedData: {e}") from None
    if sd.econtent is None:
        raise MalformedInput("the CMS SignedData carries no content (a detached signature is not a request)")
    if len(sd.signers) != 1:
        raise MalformedInput(f"the CMS SignedData must have one signer, not {len(sd.signers)}")
    # the signature first: nothing of the content is read before it is known to be the signer's
    verifier = Verifier(_ca_certs(store), revocation=OFF, usage="document-signing")
    rep = verifier.verify_cms(raw)
    if not rep.passed:
        sub = rep.sub_indication.value if rep.sub_indication else rep.indication.value
        raise VerificationError(f"the signature does not verify ({sub}): {'; '.join(rep.messages)[:300]}")
    leaf = rep.certificate.path[0].sha256.lower() if rep.certificate and rep.certificate.path else None
    signer = next((c for c in sd.certs if hashlib.sha256(c).hexdigest() == leaf), None)
    if signer is None:
        raise VerificationError("the signer's certificate is not in the SignedData")
    try:
        req = SignedRevocation.model_validate(json.loads(sd.econtent.decode("utf-8")))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "content"
        raise MalformedInput(f"the signed content is not a revocation request: {where}: {err.get('msg')}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedInput(f"the signed content is not a revocation request: {_one_line(e)}") from None
    if req.time.tzinfo is None:
        raise MalformedInput("the signed time must carry an offset (RFC 3339)")
    return signer, req


def _claimed_signer(store, raw: bytes) -> tuple[bytes, str] | None:
    """The first certificate in a (refused) SignedData that is an enterprise's, with its office:
    what the request claims, for the audit entry of its refusal -- never trusted for anything."""
    from unica.verify.cms import parse_signed_data

    try:
        certs = parse_signed_data(raw).certs if raw else []
    except Exception:  # noqa: BLE001 -- not even a SignedData: no claim to record
        return None
    for der in certs[:8]:
        ent = ra.enterprise_of_certificate(store, der)
        if ent:
            return der, ent["office"]
    return None


def _one_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__


def _claim_nonce(store, signer_der: bytes, nonce: str, body_sha256: str) -> int | None:
    """Record the nonce of a signed request; None if it was seen before (a replay). The row lives
    in ``idempotency_keys`` under the signer's fingerprint, so two service processes agree."""
    from sqlalchemy.exc import IntegrityError

    from unica.store import models as m

    try:
        with store.write() as s:
            row = m.IdempotencyKey(client="cms-revocation:" + hashlib.sha256(signer_der).hexdigest(), key=nonce,
                                   method="POST", path="/api/v1/revocation-requests", request_sha256=body_sha256,
                                   status_code=0, content_type="", body=b"",
                                   created_at=dt.datetime.now(dt.timezone.utc))
            s.add(row)
            s.flush()
            return row.id
    except IntegrityError:
        return None


def _release_nonce(store, row_id: int) -> None:
    from unica.store import models as m

    with store.write() as s:
        row = s.get(m.IdempotencyKey, row_id)
        if row is not None:
            s.delete(row)


@router.post("/revocation-requests", status_code=201, response_model=RevocationRequest, tags=["enterprise"],
             summary="Ask for revocation with a request signed by the card (CMS)",
             description="Content-Type application/pkcs7-mime or application/cms; the body is a CMS SignedData "
                         "(DER, or base64/PEM) encapsulating the JSON {serial, reason, nonce, time}. The signer's "
                         "certificate must be a valid certificate of the same enterprise; a nonce is accepted once "
                         "and the time must be within 5 minutes of the server's clock.",
             openapi_extra={"requestBody": {"required": True, "content": {
                 t: {"schema": {"type": "string", "format": "binary"}} for t in CMS_TYPES}}},
             responses={202: {"model": RevocationRequest, "description": "pending the office's decision"},
                        **_errors(400, 403, 404, 409, 415)})
async def signed_revocation_request(request: Request, response: Response):
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in CMS_TYPES:
        raise await _refuse(request, 415, "unsupported-media-type", "Unsupported media type",
                            f"send a CMS SignedData as {' or '.join(CMS_TYPES)}")
    body = await request.body()
    store = request.app.state.store
    raw = b""
    try:
        raw = _cms_bytes(body)
        signer, req = await _lib(_verify_signed_request, store, raw)
    except (MalformedInput, VerificationError) as e:
        claimed = await _lib(_claimed_signer, store, raw)  # for the audit only: who the request says it is
        office = claimed[1] if claimed else None
        if isinstance(e, MalformedInput):
            raise await _refuse(request, 400, "malformed", "Malformed request", str(e), office=office,
                                signer=claimed[0] if claimed else None) from None
        raise await _refuse(request, 403, "signature-invalid", "Signature not valid", str(e), office=office,
                            signer=claimed[0] if claimed else None) from None
    ent = await _lib(ra.enterprise_of_certificate, store, signer)
    office = ent.get("office") if ent else None
    now = dt.datetime.now(dt.timezone.utc)
    if abs(now - req.time) > CMS_TIME_WINDOW:
        raise await _refuse(request, 403, "replay", "Stale or replayed request",
                            f"the signed time {req.time.isoformat()} is more than "
                            f"{int(CMS_TIME_WINDOW.total_seconds() // 60)} minutes from the server's clock",
                            office=office, target=req.nonce, signer=signer)
    row_id = await _lib(_claim_nonce, store, signer, req.nonce, hashlib.sha256(raw).hexdigest())
    if row_id is None:
        raise await _refuse(request, 409, "replay", "Replayed request",
                            f"nonce {req.nonce} was used before", office=office, target=req.nonce, signer=signer)
    client = _client_text(await _client(request)) + " cms signer sha256:" + hashlib.sha256(signer).hexdigest()
    try:
        out = await _lib(ra.request_revocation, store, cert_serial=req.serial, ca=None, reason=req.reason,
                         requester_cert_der=signer, client=client)
    except BaseException:
        await _lib(_release_nonce, store, row_id)  # the refusal leaves the database as it was
        raise
    if out.get("status") == "pending":
        response.status_code = 202
    return out


# --- RA officers: revocation requests ------------------------------------------------------------------------


@router.get("/revocation-requests", response_model=list[RevocationRequest], tags=["registration"],
            summary="Revocation requests of an office (RA officer: their own)", responses=_errors(400, 403))
async def list_revocation_requests(request: Request,
                                   status: Annotated[Literal["pending", "done", "rejected"] | None, Query()] = None):
    _, op = await _officer(request)
    office = None if "admin" in op["roles"] else op["office"]
    return await _lib(ra.list_revocation_requests, request.app.state.store, office=office, status=status)


@router.get("/revocation-requests/{req_id}", response_model=RevocationRequest, tags=["registration"],
            summary="One revocation request (RA officer)", responses=_errors(400, 403, 404))
async def show_revocation_request(request: Request, req_id: Annotated[str, Path(pattern=_REQ_ID)]):
    _, op = await _officer(request)
    out = await _lib(ra.get_revocation_request, request.app.state.store, req_id)
    await _scope(request, op, out.get("office"), f"revocation request {req_id}")
    return out


@router.post("/revocation-requests/{req_id}/decision", response_model=RevocationRequest, tags=["registration"],
             summary="Approve or reject a pending revocation request (RA officer of its office)",
             responses=_errors(400, 403, 404, 409))
async def decide_revocation_request(request: Request, req_id: Annotated[str, Path(pattern=_REQ_ID)],
                                    body: DecisionIn):
    der, op = await _officer(request)
    if not body.approve and not body.reason:
        raise await _refuse(request, 400, "malformed", "Malformed request", "a rejection needs a reason",
                            office=op["office"], target=req_id)
    return await _lib(ra.decide_revocation, request.app.state.store, req_id, body.approve, body.reason,
                      auth=_tls_client(der))
