"""The portal's role pages: the enterprise's (``/enterprise``), the RA officer's (``/ra``) and the
auditor's (``/audit``).

Thin handlers over :mod:`unica.portal.views` (who the session's card is, and the registry,
approval and audit calls), rendered by :mod:`unica.service.pages` (templates, languages, security
headers, CSRF). Every page needs a live session (else the login page); every form that changes
something is a POST with the session's CSRF token and the same origin (:func:`pages.require_post`).
A form refused field by field is shown again with each message next to its field (422); a
refusal by the registry or the operator check is shown on the form (400/403/409) or as a 403 page;
an object of another enterprise or office is 404 or 403.

A self-service application's status token (shown once, after submitting) is also kept in the
browser, in a ``__Host-`` cookie (Secure, HttpOnly, SameSite=Strict) named after the application,
so that the page that collects the certificate can release the one-time code without asking for
it; from another browser the token is typed in.
"""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from unica.errors import EnvironmentFailure, NotAuthorized, PolicyViolation, UnicaError
from unica.service import pages

router = pages.page_router()

#: the status-token cookie of application ID: ``__Host-unica-app-ID``
APP_COOKIE = "__Host-unica-app-"
APP_COOKIE_AGE = 90 * 86400
PEM_CHAIN = "application/pem-certificate-chain"


async def _call(fn, *args, **kw):
    """A (blocking) library call off the event loop; NotFound becomes the 404 page."""
    from unica.portal.views import NotFound

    try:
        return await run_in_threadpool(fn, *args, **kw)
    except NotFound as e:
        raise pages.PageError(404, "error.not-found") from e


async def _viewer(request: Request, session=None):
    from unica.portal import views

    session = session or pages.require_session(request)
    return session, await _call(views.viewer, request.app.state.store, session)


def _status_of(e: UnicaError) -> int:
    from unica import ra

    if isinstance(e, ra.RegistryConflict):
        return 409
    if isinstance(e, (PolicyViolation, ra.EnrollmentRefused, ra.RegistryRefused)):
        return 403
    if isinstance(e, EnvironmentFailure):
        return 503
    return 400


def _words(request: Request, errors: dict) -> dict:
    """The form's messages in the page's language: a catalogue :class:`~unica.portal.views.Message`
    translated, the library's own words introduced by the catalogue's ``form.detail``."""
    from unica.portal import i18n
    from unica.portal.views import Message

    lang = pages.language(request)

    def words(m) -> str:
        if isinstance(m, Message):
            return i18n.text(m.key, lang, **m.fields)
        return i18n.text("form.detail", lang, detail=m)

    return {k: words(m) for k, m in errors.items()}


def _refused_errors(request: Request, e: UnicaError) -> tuple[dict, int]:
    """(errors for the form, status) of a refusal: per field for :class:`FormInvalid`, else one
    message for the whole form (``"_"``)."""
    from unica.portal.views import FormInvalid

    if isinstance(e, FormInvalid):
        return _words(request, e.errors), 422
    text = " ".join(str(e).split())[:500] or type(e).__name__
    return _words(request, {"_": text}), _status_of(e)


def _page(request, name, session, v, status=200, **ctx) -> Response:
    ctx.setdefault("values", {})
    ctx.setdefault("failed", None)
    return pages.render(request, name, {"session": session, "v": v, **ctx}, status)


def _form_values(form, *names) -> dict:
    return {n: (form.get(n) if isinstance(form.get(n), str) else "") for n in names}


# --- the enterprise ----------------------------------------------------------------------------------


@router.get("/enterprise")
async def enterprise_home(request: Request):
    from unica.portal import views

    session, v = await _viewer(request)
    data = await _call(views.enterprise_overview, request.app.state.store, v)
    return _page(request, "enterprise/index.html", session, v, reasons=views.REVOCATION_REASONS, **data)


@router.get("/enterprise/apply")
async def enterprise_apply_form(request: Request):
    from unica.portal import views

    session, v = await _viewer(request)
    choices = await _call(views.apply_choices, request.app.state.store, v)
    return _page(request, "enterprise/apply.html", session, v, values={}, **choices)


@router.post("/enterprise/apply")
async def enterprise_apply(request: Request):
    from unica.portal import views

    session, form = await pages.require_post(request)
    session, v = await _viewer(request, session)
    store = request.app.state.store
    values = _form_values(form, "profile", "holder", "contact", "csr")
    try:
        out = await _call(views.apply, store, v, values)
    except UnicaError as e:
        if isinstance(e, NotAuthorized):
            raise
        errors, status = _refused_errors(request, e)
        choices = await _call(views.apply_choices, store, v)
        return _page(request, "enterprise/apply.html", session, v, status, values=values, errors=errors, **choices)
    response = _page(request, "enterprise/applied.html", session, v, 201, application=out)
    response.set_cookie(APP_COOKIE + out["id"], out["status_token"], max_age=APP_COOKIE_AGE, path="/", secure=True,
                        httponly=True, samesite="strict")
    return response


@router.get("/enterprise/applications/{app_id}")
async def enterprise_application(request: Request, app_id: str):
    from unica.portal import views

    session, v = await _viewer(request)
    app = await _call(views.enterprise_application, request.app.state.store, v, app_id)
    return _page(request, "enterprise/application.html", session, v, app=app,
                 has_token=bool(request.cookies.get(APP_COOKIE + app["id"])))


@router.post("/enterprise/applications/{app_id}/collect")
async def enterprise_collect(request: Request, app_id: str):
    from unica.portal import views
    from unica.service.app import get_issuer

    session, form = await pages.require_post(request)
    session, v = await _viewer(request, session)
    store = request.app.state.store
    app = await _call(views.enterprise_application, store, v, app_id)
    token = form.get("status_token") if isinstance(form.get("status_token"), str) else ""
    token = token.strip() or request.cookies.get(APP_COOKIE + app["id"]) or ""
    try:
        issuer = get_issuer(request, app["ca"])
        out = await _call(views.collect, store, v, app["id"], token, issuer=issuer)
    except UnicaError as e:
        if isinstance(e, NotAuthorized):
            raise
        errors, status = _refused_errors(request, e)
        if "_" in errors and "status_token" not in errors and not token:
            errors = {"status_token": errors["_"]}
        return _page(request, "enterprise/application.html", session, v, status, app=app, errors=errors,
                     has_token=bool(request.cookies.get(APP_COOKIE + app["id"])))
    return _page(request, "enterprise/collected.html", session, v, app=app, result=out)


@router.get("/enterprise/certificates/{serial}.pem")
async def enterprise_certificate(request: Request, serial: str):
    from unica.portal import views

    session, v = await _viewer(request)
    name, text = await _call(views.certificate_pem, request.app.state.store, v, serial)
    return Response(text, media_type=PEM_CHAIN, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/enterprise/revocations")
async def enterprise_revoke(request: Request):
    from unica.portal import views

    session, form = await pages.require_post(request)
    session, v = await _viewer(request, session)
    store = request.app.state.store
    values = _form_values(form, "serial", "reason")
    try:
        out = await _call(views.request_revocation, store, v, values)
    except UnicaError as e:
        if isinstance(e, NotAuthorized):
            raise
        errors, status = _refused_errors(request, e)
        data = await _call(views.enterprise_overview, store, v)
        return _page(request, "enterprise/index.html", session, v, status, reasons=views.REVOCATION_REASONS,
                     errors=errors, values=values, **data)
    return _page(request, "enterprise/revocation.html", session, v, 201 if out["status"] == "done" else 202,
                 request_=out)


# --- the RA officer -----------------------------------------------------------------------------------


@router.get("/ra")
async def ra_home(request: Request):
    from unica.portal import views

    session, v = await _viewer(request)
    data = await _call(views.ra_queue, request.app.state.store, v)
    return _page(request, "ra/index.html", session, v, **data)


@router.get("/ra/enterprises")
async def ra_lookup(request: Request, q: str | None = None):
    from unica.portal import views

    session, v = await _viewer(request)
    try:
        found = await _call(views.ra_lookup, request.app.state.store, v, q)
    except views.FormInvalid as e:
        return _page(request, "ra/lookup.html", session, v, 422, q=q or "", found=[], errors=_words(request, e.errors),
                     searched=False)
    return _page(request, "ra/lookup.html", session, v, q=q or "", found=found, searched=bool(q and q.strip()))


@router.get("/ra/enterprises/{uscc}")
async def ra_enterprise(request: Request, uscc: str):
    from unica.portal import views

    session, v = await _viewer(request)
    data = await _call(views.ra_enterprise, request.app.state.store, v, uscc)
    return _page(request, "ra/enterprise.html", session, v, **data)


@router.get("/ra/applications/{app_id}")
async def ra_application(request: Request, app_id: str):
    from unica.portal import views

    session, v = await _viewer(request)
    app = await _call(views.ra_application, request.app.state.store, v, app_id)
    return _page(request, "ra/application.html", session, v, app=app, values={})


@router.post("/ra/applications/{app_id}/decision")
async def ra_decide(request: Request, app_id: str):
    from unica.portal import views

    session, form = await pages.require_post(request)
    session, v = await _viewer(request, session)
    store = request.app.state.store
    values = _form_values(form, "decision", "reason")
    try:
        out = await _call(views.ra_decide, store, v, app_id, values)
    except UnicaError as e:
        if isinstance(e, NotAuthorized):
            raise
        errors, status = _refused_errors(request, e)
        app = await _call(views.ra_application, store, v, app_id)
        return _page(request, "ra/application.html", session, v, status, app=app, values=values, errors=errors)
    return _page(request, "ra/decided.html", session, v, app=out)


@router.post("/ra/revocations/{req_id}/decision")
async def ra_decide_revocation(request: Request, req_id: str):
    from unica.portal import views

    session, form = await pages.require_post(request)
    session, v = await _viewer(request, session)
    store = request.app.state.store
    values = _form_values(form, "decision", "reason")
    try:
        out = await _call(views.ra_decide_revocation, store, v, req_id, values)
    except UnicaError as e:
        if isinstance(e, NotAuthorized):
            raise
        errors, status = _refused_errors(request, e)
        data = await _call(views.ra_queue, store, v)
        return _page(request, "ra/index.html", session, v, status, errors=errors, failed=req_id, **data)
    return _page(request, "ra/revocation-decided.html", session, v, request_=out)


@router.get("/ra/codes")
async def ra_code_form(request: Request):
    from unica.portal import views

    session, v = await _viewer(request)
    choices = await _call(views.code_choices, request.app.state.store, v)
    return _page(request, "ra/codes.html", session, v, values={}, **choices)


@router.post("/ra/codes")
async def ra_issue_code(request: Request):
    from unica.portal import views

    session, form = await pages.require_post(request)
    session, v = await _viewer(request, session)
    store = request.app.state.store
    values = _form_values(form, "uscc", "profile", "holder")
    try:
        out = await _call(views.ra_issue_code, store, v, values)
    except UnicaError as e:
        if isinstance(e, NotAuthorized):
            raise
        errors, status = _refused_errors(request, e)
        choices = await _call(views.code_choices, store, v)
        return _page(request, "ra/codes.html", session, v, status, values=values, errors=errors, **choices)
    return _page(request, "ra/decided.html", session, v, 201, app=out)


# --- the auditor ---------------------------------------------------------------------------------------


@router.get("/audit")
async def audit_home(request: Request):
    from unica.portal import views

    session, v = await _viewer(request)
    values = {k: request.query_params.get(k, "") for k in ("since", "event", "ca", "actor")}
    try:
        data = await _call(views.audit_view, request.app.state.store, v, values)
    except views.FormInvalid as e:
        return _page(request, "audit/index.html", session, v, 422, values=values, errors=_words(request, e.errors),
                     entries=[], full=True, limit=views.AUDIT_PAGE)
    return _page(request, "audit/index.html", session, v, values=values, **data)


@router.get("/audit/verify")
async def audit_verify(request: Request):
    from unica.portal import views

    session, v = await _viewer(request)
    report = await _call(views.audit_check, request.app.state.store, v)
    return _page(request, "audit/verify.html", session, v, report=report)

