"""The browser side of portal sessions: the cookie, the page's session, the way to the login.

One seam shared by the portal's pages (:mod:`unica.service.portal`) and the OpenID Connect
provider (:mod:`unica.service.oidc`): both ask :func:`request_session` who the browser is, and
both send a browser without a session to :data:`LOGIN_PATH` with ``next`` naming where it was
going. The session itself (token, timeouts, CSRF token, the card re-checked at each request) is
:mod:`unica.portal.sessions`' business.

The cookie is ``__Host-unica-session``: the ``__Host-`` prefix makes the browser refuse it unless
it is Secure, has ``Path=/`` and no ``Domain``, so neither another host nor a plain-HTTP page can
plant or read it. HttpOnly keeps it from page scripts; ``SameSite=Lax`` sends it on a top-level
navigation from an agency system to ``/oidc/authorize`` (single sign-on needs that) and on no
cross-site sub-request or form POST; every state-changing form also carries the CSRF token.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

#: the session cookie's name (see the module's docstring for the prefix)
COOKIE = "__Host-unica-session"
#: the portal's login page
LOGIN_PATH = "/login"
#: the longest ``next`` kept (a longer one is dropped: the login then lands on the home page)
MAX_NEXT = 2048


def session_token(request: Request) -> str | None:
    """The session token the browser presents, or None."""
    return request.cookies.get(COOKIE)


def request_session(request: Request):
    """The :class:`~unica.portal.sessions.Session` of this request; raises
    :class:`~unica.portal.sessions.SessionEnded` (with its ``reason``) when there is none."""
    from unica.portal.sessions import current_session

    return current_session(request.app.state.store, session_token(request))


def set_session_cookie(response: Response, token: str, max_age: int) -> None:
    response.set_cookie(COOKIE, token, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this service (``/...``, not ``//host`` nor ``/\\host``, no
    scheme, no host, no control characters), else ``/``: a login never redirects off-site."""
    if not value or len(value) > MAX_NEXT or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c == "\x7f" or c == "\\" for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def login_redirect(request: Request) -> RedirectResponse:
    """303 to the login page, ``next`` naming this request's path and query."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(safe_next(target), safe='')}", status_code=303)
