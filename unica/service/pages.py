"""The portal's page machinery: templates, languages, security headers, sessions and CSRF.

Every portal page is a route of a router made by :func:`page_router` (its routes are
:class:`PageRoute`\\ s) and answers with :func:`render`:

- templates are Jinja2 files under ``unica/portal/templates`` (autoescaped, undefined names are
  errors), extending ``base.html``; the words come from :mod:`unica.portal.i18n` (``t("key")``
  in a template), in the request's language (``?lang=en`` switches and is remembered in a cookie);
- every answer of a page route carries the security headers (:data:`SECURITY_HEADERS`: a CSP
  without inline scripts or styles, frame denial, nosniff, same-origin referrers) and, unless the
  route says otherwise, ``Cache-Control: no-store``;
- :func:`require_session` gives the request's :class:`~unica.portal.sessions.Session` or sends the
  browser to the login page (:func:`unica.service.websession.login_redirect`, with the reason the
  session ended); :func:`require_post` checks a state-changing request: the same origin (when the
  browser says where it comes from) and the session's CSRF token (the form field
  :data:`CSRF_FIELD`, :func:`csrf_field` in the template) -- 403 otherwise;
- refusals raised in a page route become pages, not problem documents: a missing session a
  redirect to the login, a CSRF or origin refusal and :class:`~unica.errors.NotAuthorized` 403, a
  malformed form 422 (:func:`error_page`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from unica.portal import i18n
from unica.service import websession

TEMPLATES = Path(__file__).resolve().parent.parent / "portal" / "templates"
STATIC = Path(__file__).resolve().parent.parent / "portal" / "static"

#: the form field holding the session's CSRF token
CSRF_FIELD = "csrf_token"

#: the Content-Security-Policy of every page (``connect-src`` widened only where a page needs it)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class PageRedirect(Exception):
    """Raised in a page route: answer with ``response`` (a redirect) instead."""

    def __init__(self, response: Response):
        super().__init__("redirect")
        self.response = response


class PageError(Exception):
    """Raised in a page route: answer with the error page, ``status`` and the catalogue's
    ``message_key`` (or a ready ``message``)."""

    def __init__(self, status: int, message_key: str | None = None, *, message: str | None = None,
                 headers: dict | None = None):
        super().__init__(message or message_key or str(status))
        self.status, self.message_key, self.message, self.headers = status, message_key, message, headers


@functools.lru_cache(maxsize=1)
def environment():
    """The Jinja2 environment over the portal's templates (made once per process)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env


# --- the request's language, origin and session ------------------------------------------------


def language(request: Request) -> str:
    return i18n.language_of(request.query_params.get("lang"), request.cookies.get(i18n.LANG_COOKIE))


def own_origin(request: Request) -> str:
    """This portal's origin (``https://host[:port]``): the scheme and authority of the OpenID
    Connect issuer URL (:func:`unica.service.oidc.issuer_of`), which the listening socket or the
    configuration gives -- never the client's Host header."""
    from unica.service.oidc import issuer_of

    parts = urlsplit(issuer_of(request))
    return f"{parts.scheme}://{parts.netloc}"


def source_of(request: Request) -> str | None:
    """The client's address (the proxy's client in proxy mode)."""
    from unica.service.identity import client_of

    return client_of(request.scope, request.app.state.settings).address


def require_session(request: Request):
    """The request's session; without one (none, logged out, timed out, the card no longer
    valid) raises :class:`PageRedirect` to the login page, ``next`` naming this page and
    ``ended`` the reason."""
    from unica.portal.sessions import SessionEnded

    try:
        return websession.request_session(request)
    except SessionEnded as e:
        raise PageRedirect(to_login(request, e.reason)) from None


def optional_session(request: Request):
    """The request's session, or None."""
    from unica.portal.sessions import SessionEnded

    try:
        return websession.request_session(request)
    except SessionEnded:
        return None


def to_login(request: Request, reason: str | None) -> Response:
    response = websession.login_redirect(request)
    if reason and reason != "unknown":
        response.headers["location"] += "&" + urlencode({"ended": reason})
    if websession.session_token(request) is not None:
        websession.clear_session_cookie(response)
    return response


def check_same_origin(request: Request) -> None:
    """A state-changing request must come from this portal's own pages: an ``Origin`` header
    (browsers send one with every POST) naming another origin is refused (403)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != own_origin(request):
        raise PageError(403, "error.origin")


async def require_post(request: Request):
    """For a state-changing form: the session (else the login), the same origin and the CSRF
    token of the form (else 403). Returns (session, form)."""
    from unica.portal.sessions import check_csrf

    session = require_session(request)
    check_same_origin(request)
    form = await request.form()
    check_csrf(session, form.get(CSRF_FIELD))
    return session, form


def csrf_field(session):
    """The hidden form field carrying ``session``'s CSRF token (markup for a template)."""
    from markupsafe import Markup, escape

    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(session.csrf_token)}">')


# --- answers ------------------------------------------------------------------------------------


def _lang_url(request: Request, lang: str) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"] + [("lang", lang)]
    return request.url.path + "?" + urlencode(query)


def render(request: Request, name: str, ctx: dict | None = None, status: int = 200, *,
           headers: dict | None = None, connect_src: tuple[str, ...] = (),
           form_action: tuple[str, ...] = ()) -> HTMLResponse:
    """The page ``name`` (a template) with ``ctx``, in the request's language, with the security
    headers; ``connect_src``: origins the page's script may also reach (the login page's agent);
    ``form_action``: origins the page's form submission may end at after redirects (browsers
    check CSP form-action on every redirect of a form's navigation: a login for an agency
    system ends at its redirect URI)."""
    lang = language(request)
    other = "en" if lang == "zh" else "zh"
    session = ctx.get("session") if ctx else None
    values = {
        "request": request, "lang": lang, "other_lang": other, "lang_url": _lang_url(request, other),
        "t": functools.partial(i18n.text_in, lang), "session": session, "errors": {},
        "csrf_field": (lambda: csrf_field(session)) if session is not None else None,
        "path": request.url.path,
    }
    values.update(ctx or {})
    body = environment().get_template(name).render(values)
    response = HTMLResponse(body, status_code=status, headers=headers)
    csp = CSP
    if connect_src:
        csp = csp.replace("connect-src 'self'", "connect-src 'self' " + " ".join(connect_src))
    if form_action:
        csp = csp.replace("form-action 'self'", "form-action 'self' " + " ".join(form_action))
    if csp != CSP:
        response.headers["Content-Security-Policy"] = csp
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie(i18n.LANG_COOKIE, lang, max_age=365 * 86400, path="/", secure=True, httponly=True,
                            samesite="lax")
    return response


def error_page(request: Request, status: int, message_key: str | None = None, *, message: str | None = None,
               headers: dict | None = None) -> HTMLResponse:
    lang = language(request)
    shown = message if message is not None else i18n.text(message_key or "error.title", lang)
    return render(request, "error.html", {"status": status, "message": shown, "session": None}, status,
                  headers=headers)


def origin_of(uri: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URI, for a CSP source list (None: not one, or a
    netloc with characters that would end the source)."""
    target = urlsplit(uri)
    if target.scheme not in ("https", "http") or not target.netloc or any(c in target.netloc for c in " ;,'\""):
        return None
    return f"{target.scheme}://{target.netloc}"


def secure(response: Response, *, cache: str = "no-store") -> Response:
    """Add the security headers (those not set already) and the cache policy."""
    for k, v in SECURITY_HEADERS.items():
        if k.lower() not in response.headers:
            response.headers[k] = v
    if "cache-control" not in response.headers:
        response.headers["Cache-Control"] = cache
    return response


class PageRoute(APIRoute):
    """A portal page: refusals raised in it become pages (see the module's description), and
    every answer carries the security headers."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            from unica.errors import NotAuthorized
            from unica.portal.sessions import CSRFRefused, SessionEnded

            try:
                response = await handler(request)
            except PageRedirect as e:
                response = e.response
            except PageError as e:
                response = error_page(request, e.status, e.message_key, message=e.message, headers=e.headers)
            except SessionEnded as e:
                response = to_login(request, e.reason)
            except CSRFRefused:
                response = error_page(request, 403, "error.csrf")
            except NotAuthorized:
                response = error_page(request, 403, "error.forbidden")
            except RequestValidationError:
                response = error_page(request, 422, "error.invalid")
            return secure(response)

        return page_handler


def page_router(**kwargs) -> APIRouter:
    """An APIRouter whose routes are :class:`PageRoute` s (and stay out of the OpenAPI document)."""
    kwargs.setdefault("include_in_schema", False)
    return APIRouter(route_class=PageRoute, **kwargs)


def redirect(url: str) -> RedirectResponse:
    """303 to a path of this service."""
    return RedirectResponse(url, status_code=303)


def login_url(next_path: str | None = None, **params) -> str:
    q = {"next": websession.safe_next(next_path)} if next_path else {}
    q.update({k: v for k, v in params.items() if v is not None})
    return websession.LOGIN_PATH + ("?" + urlencode(q, quote_via=quote) if q else "")
