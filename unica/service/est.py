"""EST, Enrollment over Secure Transport (RFC 7030, with the clarifications of RFC 8951).

Routes under ``/.well-known/est/`` and ``/.well-known/est/<ca-label>/`` (the label is a CA name):

- ``GET cacerts``: the CA's chain (the CA first, then its parents) as a base64 certs-only
  PKCS#7 (``application/pkcs7-mime``).
- ``POST simpleenroll``: a base64 PKCS#10 (``application/pkcs10``) with HTTP Basic credentials:
  user name = the application id, password = its one-time enrollment code. The registry
  (:func:`unica.ra.enroll`) checks the code, takes the subject from the registered enterprise and
  holder (never from the request) and issues under the application's profile; the answer is a
  base64 certs-only PKCS#7 holding the issued certificate. Missing or wrong credentials, and an
  expired, used or locked code: 401 with ``WWW-Authenticate`` (the problem type names which); an
  application still waiting for its approval: 202 with ``Retry-After``; a malformed body: 400; a
  request the profile refuses: 403.
- ``POST simplereenroll``: the same request over TLS client authentication with the current
  certificate (valid, not revoked: the service core checks it, then the registry); the registry
  keeps the identity and the profile, a new key is allowed.
- ``GET csrattrs``: what the CA's profiles need of a request (key algorithms and curves), as
  a base64 DER ``CsrAttrs`` (``application/csrattrs``).

Handlers stay thin: they read a bounded body, decode it, call the registry library in a worker
thread, and wrap the result. Refusals are :class:`unica.service.problems.Problem` (RFC 9457
problem details) and the library's typed errors, which the service core renders. Every refused
enrollment is audited once: by the registry (``enrollment.refused``), by the core (a refused
client certificate) or here (``est.refused``: credentials missing, a malformed body, ...).
"""

from __future__ import annotations

import base64
import binascii
import re

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from unica.errors import CANotFound, InputError, PolicyViolation, UnicaError
from unica.service.problems import Problem, log

router = APIRouter(tags=["EST (RFC 7030)"])

BASE = "/.well-known/est"
#: a PKCS#10 request is at most 64 KiB of DER (unica.ca.request.MAX_CSR_BYTES); base64 with line
#: breaks makes that some 89 KiB
MAX_BODY = 96 * 1024
REALM = "unica EST"
#: seconds a client waits before asking again for an application that awaits its approval
RETRY_AFTER = 600

PKCS7_TYPE = "application/pkcs7-mime; smime-type=certs-only"
CSRATTRS_TYPE = "application/csrattrs"
PKCS10_TYPE = "application/pkcs10"

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_WS = re.compile(rb"[ \t\r\n]+")


# --- wire formats ------------------------------------------------------------------------------


class _Attribute(core.Sequence):
    """RFC 2986 Attribute, as CsrAttrs carries it: a type and a set of values (here OIDs)."""

    _fields = [("type", core.ObjectIdentifier), ("values", core.SetOf, {"spec": core.ObjectIdentifier})]


class _AttrOrOID(core.Choice):
    _alternatives = [("oid", core.ObjectIdentifier), ("attribute", _Attribute)]


class CsrAttrs(core.SequenceOf):
    """RFC 7030 section 4.5.2: ``CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID``."""

    _child_spec = _AttrOrOID


ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
ED25519 = "1.3.101.112"
#: unica key type (unica.hsm.keytypes.KeyType) -> the named curve a CSR's EC key must be on
CURVES = {"ec-p256": "1.2.840.10045.3.1.7", "ec-p384": "1.3.132.0.34"}
#: the signature algorithm that goes with each curve (RFC 5480 section 4)
CURVE_SIGNATURES = {"ec-p256": "1.2.840.10045.4.3.2", "ec-p384": "1.2.840.10045.4.3.3"}


def csr_attributes(key_types) -> bytes:
    """The DER CsrAttrs asking for one of ``key_types`` (unica key type names): an
    id-ecPublicKey attribute listing the allowed curves, rsaEncryption and id-Ed25519 as OIDs
    when allowed, and the ECDSA signature algorithms that go with the curves."""
    kts = list(dict.fromkeys(key_types))
    items = []
    curves = [CURVES[k] for k in kts if k in CURVES]
    if curves:
        items.append(_AttrOrOID(name="attribute", value=_Attribute(
            {"type": ID_EC_PUBLIC_KEY, "values": curves})))
    if any(k.startswith("rsa-") for k in kts):
        items.append(_AttrOrOID(name="oid", value=core.ObjectIdentifier(RSA_ENCRYPTION)))
    if "ed25519" in kts:
        items.append(_AttrOrOID(name="oid", value=core.ObjectIdentifier(ED25519)))
    for k in kts:
        if k in CURVE_SIGNATURES:
            items.append(_AttrOrOID(name="oid", value=core.ObjectIdentifier(CURVE_SIGNATURES[k])))
    return CsrAttrs(items).dump()


def certs_only(certs: list[x509.Certificate]) -> bytes:
    """A certs-only CMS SignedData (the "degenerate" PKCS#7 of RFC 7030 sections 4.1.3 and
    4.2.3), DER, base64 with line breaks."""
    return base64.encodebytes(pkcs7.serialize_certificates(certs, Encoding.DER))


def _base64_response(body: bytes, media_type: str) -> Response:
    return Response(content=body, media_type=media_type, headers={"Content-Transfer-Encoding": "base64"})


def decode_base64_body(raw: bytes, what: str = "the request body") -> bytes:
    """RFC 7030 bodies are base64 (RFC 4648), line breaks allowed (RFC 8951 section 3.3)."""
    data = _WS.sub(b"", raw)
    if not data:
        raise Problem(400, "malformed", "Malformed request", f"{what} is empty (expected a base64 PKCS#10 request)")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(400, "malformed", "Malformed request",
                      f"{what} is not base64 (RFC 7030 asks for a base64-encoded DER PKCS#10 request)") from None


# --- request plumbing ----------------------------------------------------------------------------


def _unauthorized(detail: str, slug: str = "not-authorized") -> Problem:
    """401 with the Basic challenge (RFC 7030 section 3.2.3; RFC 9110 wants one on every 401)."""
    return Problem(401, slug, "Authentication failed", detail,
                   headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})


def _check_label(label: str | None) -> str | None:
    if label is not None and not _LABEL.fullmatch(label):
        raise Problem(404, "not-found", "No such EST label", "the EST path label is not a CA name")
    return label


async def _read_body(request: Request) -> bytes:
    """The request body, at most MAX_BODY bytes (the Content-Length is checked first, the stream
    as it arrives)."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise Problem(400, "malformed", "Malformed request", "Content-Length is not a number") from None
        if n > MAX_BODY:
            raise Problem(413, "body-too-large", detail=f"an EST request body is at most {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Problem(413, "body-too-large", detail=f"an EST request body is at most {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _csr_body(request: Request):
    """The PKCS#10 of an enrollment request, parsed (and its signature checked) once, here: a
    malformed request is refused before any credential is looked at by the registry, which
    takes the parsed request."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != PKCS10_TYPE:
        raise Problem(415, "unsupported-media-type",
                      detail=f"an EST enrollment request is {PKCS10_TYPE} (base64), not {ctype or 'untyped'}")
    der = decode_base64_body(await _read_body(request))
    from unica.ca.request import parse_csr

    try:
        return parse_csr(der, "the EST request")
    except InputError as e:
        raise Problem(400, "malformed", "Malformed request", str(e)) from None
    except PolicyViolation as e:  # a signature that does not verify, a key type unica does not know
        raise Problem(403, "policy", "Refused by policy", str(e)) from None


def _basic_credentials(request: Request) -> tuple[str, str]:
    """(application id, enrollment code) from ``Authorization: Basic``; 401 when absent or unreadable."""
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("simpleenroll needs HTTP Basic credentials: the application id as user name, "
                            "the enrollment code as password")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise _unauthorized("only HTTP Basic credentials are accepted here")
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _unauthorized("the Basic credentials are not base64 of UTF-8 user:password") from None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise _unauthorized("the Basic credentials need both an application id and an enrollment code")
    return user.strip(), password.strip()


def _client_text(request: Request, cert_der: bytes | None = None) -> str:
    """Who is asking, for the audit log: the peer address (and the certificate's SHA-256)."""
    import hashlib

    peer = request.client.host if request.client else "unknown"
    if cert_der:
        return f"{peer} cert-sha256:{hashlib.sha256(cert_der).hexdigest()[:16]}"
    return peer


def _store(request: Request):
    return request.app.state.store


def _issuer(request: Request, ca_name: str):
    from unica.service.app import get_issuer

    return get_issuer(request, ca_name)


def _default_ca(store) -> str:
    """The CA an unlabelled EST path speaks for: the one CA the RA offices enroll under (else the
    one active CA); with more than one, the client must name it in the path."""
    from sqlalchemy import select

    from unica.store import models as m

    with store.read() as s:
        office_cas = {c for cas in s.scalars(select(m.Office.cas)) for c in (cas or ())}
        if len(office_cas) == 1:
            return next(iter(office_cas))
        active = s.scalars(select(m.CA.name).where(m.CA.status == "active", m.CA.cert_der.is_not(None))).all()
        if not office_cas and len(active) == 1:
            return active[0]
    raise Problem(404, "ca-label-required", "Name the CA in the path",
                  "this service has several CAs: use /.well-known/est/<ca-name>/...")


def _ca_chain(store, ca_name: str) -> list[x509.Certificate]:
    from unica.ca.authority import export_ca

    return x509.load_pem_x509_certificates(export_ca(store, ca_name, chain=True).encode())


def _profiles_of(store, ca_name: str) -> list[str]:
    """The profiles enrollment uses at this CA: those of the RA offices that enroll under it
    (else the CA's own profile set)."""
    from sqlalchemy import select

    from unica.ca.records import get_ca_row
    from unica.store import models as m

    with store.read() as s:
        row = get_ca_row(s, ca_name)
        names = []
        for cas, profiles in s.execute(select(m.Office.cas, m.Office.profiles)):
            if ca_name in (cas or ()):
                names.extend(profiles or ())
        if not names:
            names = list(row.profiles or ())
        return list(dict.fromkeys(names))


# --- the operations ------------------------------------------------------------------------------


async def _cacerts(request: Request, label: str | None) -> Response:
    store = _store(request)
    ca_name = _check_label(label) or await run_in_threadpool(_default_ca, store)
    certs = await run_in_threadpool(_ca_chain, store, ca_name)
    return _base64_response(certs_only(certs), PKCS7_TYPE)


#: refusals of the credentials (application id + code): 401 with the challenge, like the service
#: core; the others 403
_CREDENTIAL_SLUGS = {"code-invalid", "code-expired", "code-used", "code-locked", "no-such-application"}


def _refusal(e) -> Problem:
    """An EnrollmentRefused as the RFC 7030 answer: credentials that do not hold 401 (with the
    challenge; an unknown application answers as a wrong code, so ids cannot be probed), an
    application awaiting its approval 202 with Retry-After (RFC 7030 section 4.2.3), others 403."""
    slug = getattr(e, "slug", None) or getattr(e, "reason_slug", None) or "policy"
    if slug in ("code-invalid", "no-such-application"):
        return _unauthorized("the application id or the enrollment code is wrong", slug="code-invalid")
    if slug in _CREDENTIAL_SLUGS:
        return _unauthorized(str(e), slug=slug)
    if slug == "not-approved":
        return Problem(202, "not-approved", "Waiting for approval", str(e),
                       headers={"Retry-After": str(RETRY_AFTER)})
    return Problem(403, slug, "Enrollment refused", str(e))


async def _audit_refusal(request: Request, problem: Problem, ctx: dict) -> None:
    """Record a refusal this module made itself (``est.refused``: the slug, the client, the
    application and its office when known). The registry audits its own refusals and the core a
    refused client certificate: those problems carry ``audited``."""
    if problem.status < 400 or getattr(problem, "audited", False):
        return
    store = _store(request)
    details = {"slug": problem.slug, "status": problem.status, "detail": problem.detail,
               "client": ctx.get("client") or _client_text(request), "office": ctx.get("office"),
               "method": request.method, "path": request.url.path}

    def write() -> None:
        with store.write() as s:
            store.audit(s, "est.refused", ca=ctx.get("ca"), target=ctx.get("target"), details=details)

    try:
        await run_in_threadpool(write)
    except Exception:  # noqa: BLE001 - the refusal stands whether or not the audit entry could be written
        log.exception("cannot audit a refused EST request")


def _library_refusal(e) -> Problem:
    p = _refusal(e)
    p.audited = True  # the registry wrote its own audit entry
    return p


async def _simpleenroll(request: Request, label: str | None) -> Response:
    ctx: dict = {"ca": label}
    try:
        return await _enroll(request, label, ctx)
    except Problem as p:
        await _audit_refusal(request, p, ctx)
        raise


async def _enroll(request: Request, label: str | None, ctx: dict) -> Response:
    label = _check_label(label)
    app_id, code = _basic_credentials(request)
    ctx["target"] = app_id
    csr = await _csr_body(request)
    store = _store(request)
    from unica import ra

    client = _client_text(request)

    def issuer_for(app_ca: str, office: str):  # the registry read the application: its CA and office
        ctx["office"] = office
        if label is not None and app_ca != label:  # as for an unknown application: no probing
            raise _unauthorized("the application id or the enrollment code is wrong", slug="code-invalid")
        ctx["ca"] = app_ca
        try:
            return _issuer(request, app_ca)
        except CANotFound:
            raise Problem(404, "not-found", "No such CA", f"no CA named {app_ca!r}") from None

    def enroll():  # one trip to the thread pool, one read of the application (ra.enroll's)
        try:
            return ra.enroll(store, app_id, code, csr, issuer=issuer_for, client=client)
        except ra.EnrollmentRefused as e:
            raise _library_refusal(e) from None

    issued = await run_in_threadpool(enroll)
    cert = x509.load_der_x509_certificate(issued.der)
    return _base64_response(certs_only([cert]), PKCS7_TYPE)


async def _simplereenroll(request: Request, label: str | None) -> Response:
    ctx: dict = {"ca": label}
    try:
        return await _reenroll(request, label, ctx)
    except Problem as p:
        if p.slug == "client-certificate":
            p.audited = True  # the core audits a refused client certificate (service.client_refused)
        await _audit_refusal(request, p, ctx)
        raise


async def _reenroll(request: Request, label: str | None, ctx: dict) -> Response:
    """TLS client authentication with the current certificate: checked by the service core
    (recorded by a CA of this database, valid now, not revoked or on hold, path valid for client
    authentication; 401 without one, 403 refused) and again by the registry, which keeps the
    identity and the profile."""
    label = _check_label(label)
    from unica.service.identity import require_certificate

    checked = await run_in_threadpool(require_certificate, request)
    ctx.update(target=checked.serial, office=checked.office, client=_client_text(request, checked.der))
    csr = await _csr_body(request)
    store = _store(request)
    if label is not None and label != checked.ca:
        raise Problem(403, "policy", "Another CA's certificate",
                      f"the client certificate was issued by CA {checked.ca!r}, not {label!r}")
    ctx["ca"] = checked.ca
    issuer = _issuer(request, checked.ca)
    from unica import ra

    try:
        issued = await run_in_threadpool(ra.reenroll, store, checked.der, csr, issuer=issuer,
                                         client=ctx["client"])
    except ra.EnrollmentRefused as e:
        raise _library_refusal(e) from None
    cert = x509.load_der_x509_certificate(issued.der)
    return _base64_response(certs_only([cert]), PKCS7_TYPE)


async def _csrattrs(request: Request, label: str | None) -> Response:
    store = _store(request)
    ca_name = _check_label(label) or await run_in_threadpool(_default_ca, store)

    def key_types() -> list[str]:
        from unica.policies import get_profile

        out = []
        for name in _profiles_of(store, ca_name):
            try:
                p = get_profile(name)
            except UnicaError:
                continue
            if not p.is_ca:
                out.extend(p.key_types)
        return out

    kts = await run_in_threadpool(key_types)
    if not kts:
        return Response(status_code=204)
    return _base64_response(base64.encodebytes(csr_attributes(kts)), CSRATTRS_TYPE)


# --- routes (each with and without the CA label) -------------------------------------------------

_PKCS7 = {"content": {"application/pkcs7-mime": {"schema": {"type": "string", "format": "base64"}}},
          "description": "base64 certs-only PKCS#7 (RFC 7030)"}
_PKCS10_BODY = {"requestBody": {"required": True, "content": {
    PKCS10_TYPE: {"schema": {"type": "string", "format": "base64"}}}}}
_ENROLL_RESPONSES = {200: _PKCS7, 202: {"description": "application awaiting approval (Retry-After)"},
                     400: {"description": "malformed request"}, 401: {"description": "credentials missing or wrong"},
                     403: {"description": "refused"}}


@router.get(BASE + "/cacerts", responses={200: _PKCS7}, summary="CA certificates (RFC 7030 4.1)")
async def cacerts(request: Request) -> Response:
    return await _cacerts(request, None)


@router.get(BASE + "/{label}/cacerts", responses={200: _PKCS7}, summary="CA certificates of a named CA")
async def cacerts_labelled(request: Request, label: str) -> Response:
    return await _cacerts(request, label)


@router.post(BASE + "/simpleenroll", responses=_ENROLL_RESPONSES, openapi_extra=_PKCS10_BODY,
             summary="Enroll with an application id and one-time code (RFC 7030 4.2)")
async def simpleenroll(request: Request) -> Response:
    return await _simpleenroll(request, None)


@router.post(BASE + "/{label}/simpleenroll", responses=_ENROLL_RESPONSES, openapi_extra=_PKCS10_BODY,
             summary="Enroll at a named CA")
async def simpleenroll_labelled(request: Request, label: str) -> Response:
    return await _simpleenroll(request, label)


@router.post(BASE + "/simplereenroll", responses=_ENROLL_RESPONSES, openapi_extra=_PKCS10_BODY,
             summary="Re-enroll with the current certificate over TLS client authentication (RFC 7030 4.2.2)")
async def simplereenroll(request: Request) -> Response:
    return await _simplereenroll(request, None)


@router.post(BASE + "/{label}/simplereenroll", responses=_ENROLL_RESPONSES, openapi_extra=_PKCS10_BODY,
             summary="Re-enroll at a named CA")
async def simplereenroll_labelled(request: Request, label: str) -> Response:
    return await _simplereenroll(request, label)


_CSRATTRS = {200: {"content": {CSRATTRS_TYPE: {"schema": {"type": "string", "format": "base64"}}},
                   "description": "base64 DER CsrAttrs (RFC 7030 4.5.2)"},
             204: {"description": "nothing asked of the request"}}


@router.get(BASE + "/csrattrs", responses=_CSRATTRS, summary="What a request must carry (RFC 7030 4.5)")
async def csrattrs(request: Request) -> Response:
    return await _csrattrs(request, None)


@router.get(BASE + "/{label}/csrattrs", responses=_CSRATTRS, summary="What a request to a named CA must carry")
async def csrattrs_labelled(request: Request, label: str) -> Response:
    return await _csrattrs(request, label)
