"""The portal's login, logout and home pages (issue #14).

- ``GET /login``: the login page (card login through the local signing agent; TLS client
  certificate login); ``next`` (a path on this service, :func:`~unica.service.websession.
  safe_next`), ``agent`` (the agent's port, default :data:`AGENT_PORT`), ``ended`` (why the last
  session ended) are shown or carried.
- ``GET /login/challenge``: ``{"challenge": TEXT, "agent": URL}`` -- a fresh one-time challenge
  for this portal's origin (:func:`unica.portal.login.issue_challenge`), and where the agent is
  usually found. The page's script hands the text to the agent, which signs it with the card.
- ``POST /login``: the form (or JSON) ``challenge``, ``signature`` and ``certificate`` (base64),
  ``next`` -> :func:`unica.portal.login.verify_login` -> a new session
  (:func:`unica.portal.sessions.open_session`: a new token at every login, whatever cookie the
  browser had) -> the session cookie and 303 to ``next``. Refused: the login page again with the
  reason (400 malformed, 403 refused), the failure counted for the source
  (:mod:`unica.portal.ratelimit`: 429 with Retry-After once too many).
- ``POST /login/tls``: the same with the connection's TLS client certificate
  (:func:`unica.portal.login.verify_tls_login`).
- ``POST /logout``: CSRF-checked; ends the session, clears the cookie, 303 to ``next`` (a path
  here) or the login page. The OpenID Connect end-session endpoint ends sessions through it.
- ``GET /``: who is logged in, the pages their roles open, the agency systems they can enter.
- ``GET /static/{name}``: the portal's CSS and script.

POSTs coming from another origin (the browser's ``Origin`` header) are refused (403) before
anything else, login included: a login CSRF (a victim's browser logged into someone else's
session) needs a cross-site POST.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading

from fastapi import Request
from starlette.responses import JSONResponse, Response

from unica.service import pages, websession

router = pages.page_router(tags=["portal"])

#: the signing agent's default port (``unica agent --port``'s default)
AGENT_PORT = 8765
#: the largest login body read (a challenge, a P-384/RSA signature, a certificate, base64)
MAX_LOGIN_BODY = 32 * 1024

#: the static files served, and their types
STATIC_TYPES = {"portal.css": "text/css; charset=utf-8", "login.js": "text/javascript; charset=utf-8"}

_limiters: dict[int, object] = {}
_limiters_lock = threading.Lock()


def limiter(request: Request):
    """The process's :class:`~unica.portal.ratelimit.FailureLimiter` of this app."""
    from unica.portal.ratelimit import MAX_FAILURES, WINDOW, FailureLimiter

    app = request.app
    with _limiters_lock:
        found = getattr(app.state, "login_failures", None)
        if found is None:
            extra = app.state.settings.extra or {}
            found = FailureLimiter(int(extra.get("login_max_failures", MAX_FAILURES)),
                                   float(extra.get("login_window", WINDOW)))
            app.state.login_failures = found
    return found


def _agent_port(value) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        return AGENT_PORT
    return port if 0 < port < 65536 else AGENT_PORT


def _login_page(request: Request, status: int = 200, *, errors: dict | None = None, next_path: str | None = None,
                agent=None, notice: str | None = None, headers: dict | None = None) -> Response:
    from unica.portal import i18n

    lang = pages.language(request)
    ended = request.query_params.get("ended")
    if notice is None and ended and i18n.has(f"login.ended.{ended}"):
        notice = i18n.text(f"login.ended.{ended}", lang)
    next_path = websession.safe_next(next_path if next_path is not None else request.query_params.get("next"))
    agent = _agent_port(agent if agent is not None else request.query_params.get("agent"))
    return pages.render(request, "login.html", {"errors": errors or {}, "next": next_path, "agent": agent,
                                                "notice": notice},
                        status, headers=headers, connect_src=("http://127.0.0.1:*", "http://localhost:*"),
                        form_action=_next_origins(request, next_path))


def _next_origins(request: Request, next_path: str) -> tuple[str, ...]:
    """Where the login form's navigation may end besides this portal: when ``next`` is an
    authorization request of a registered agency system (its exact redirect URI), that URI's
    origin -- the login's 303 goes to /oidc/authorize, whose 303 goes there, and browsers check
    the page's CSP form-action at each redirect. Anything else: none."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(next_path)
    if parts.path != "/oidc/authorize":
        return ()
    q = parse_qs(parts.query)
    client_id, redirect_uri = (q.get("client_id") or [None])[0], (q.get("redirect_uri") or [None])[0]
    from unica.sso.flow import ClientRefused, check_client

    try:
        check_client(request.app.state.store, client_id, redirect_uri)
    except ClientRefused:
        return ()
    origin = pages.origin_of(redirect_uri)
    return (origin,) if origin else ()


@router.get("/login", summary="The login page")
def login_page(request: Request) -> Response:
    return _login_page(request)


@router.get("/login/challenge", summary="A one-time card-login challenge for this portal")
def login_challenge(request: Request) -> Response:
    from unica.portal.login import issue_challenge

    text = issue_challenge(request.app.state.store, pages.own_origin(request), source=pages.source_of(request))
    return JSONResponse({"challenge": text, "agent": f"http://127.0.0.1:{AGENT_PORT}/"},
                        headers={"Cache-Control": "no-store"})


async def _login_fields(request: Request) -> dict:
    """The login's fields, from a form or a JSON body (at most MAX_LOGIN_BODY bytes)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BODY:
                raise ValueError("too large")
        data = json.loads(body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return {k: v for k, v in data.items() if isinstance(v, str)}
    form = await request.form(max_files=0, max_fields=16, max_part_size=MAX_LOGIN_BODY)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _b64(value: str | None) -> bytes:
    if not value:
        raise ValueError("empty")
    v = value.strip()
    return base64.b64decode(v + "=" * (-len(v) % 4), altchars=b"-_" if ("-" in v or "_" in v) else None,
                            validate=True)


def _refused_page(request: Request, status: int, key: str, *, next_path, agent, field: str = "_",
                  headers: dict | None = None, **fields) -> Response:
    from unica.portal import i18n

    message = i18n.text(key, pages.language(request), **fields)
    return _login_page(request, status, errors={field: message}, next_path=next_path, agent=agent,
                       headers=headers)


def _rate_limited(request: Request, source, next_path, agent) -> Response | None:
    wait = limiter(request).retry_after(source)
    if wait:
        return _refused_page(request, 429, "login.error.rate", next_path=next_path, agent=agent,
                             headers={"Retry-After": str(wait)}, seconds=wait)
    return None


def _logged_in(request: Request, facts, cert_der: bytes, source, next_path) -> Response:
    from unica.portal.sessions import ABSOLUTE_TIMEOUT, open_session

    token, _session = open_session(request.app.state.store, facts, cert_der, source=source)
    response = pages.redirect(websession.safe_next(next_path))
    websession.set_session_cookie(response, token, int(ABSOLUTE_TIMEOUT.total_seconds()))
    return response


@router.post("/login", summary="Card login: a challenge signed by the card through the agent")
async def login(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    from unica.errors import LoginRefused
    from unica.portal.login import verify_login

    pages.check_same_origin(request)
    source = pages.source_of(request)
    try:
        fields = await _login_fields(request)
    except (ValueError, UnicodeDecodeError):
        fields = None
    next_path = (fields or {}).get("next")
    agent = (fields or {}).get("agent")
    limited = _rate_limited(request, source, next_path, agent)
    if limited is not None:
        return limited
    try:
        if fields is None:
            raise ValueError("malformed")
        # a browser's form submission turns the text's line feeds into CRLF (HTML's newline
        # normalisation); the challenge format has no CR, and the card signed LF lines
        challenge = (fields.get("challenge") or "").replace("\r\n", "\n")
        signature, cert_der = _b64(fields.get("signature")), _b64(fields.get("certificate"))
        if not challenge:
            raise ValueError("no challenge")
    except (ValueError, binascii.Error):
        limiter(request).failed(source)
        return _refused_page(request, 400, "login.error.missing", next_path=next_path, agent=agent)
    store = request.app.state.store
    try:
        facts = await run_in_threadpool(verify_login, store, origin=pages.own_origin(request),
                                        challenge_text=challenge, signature=signature, cert_der=cert_der,
                                        source=source)
    except LoginRefused as e:
        limiter(request).failed(source)
        status = 400 if e.slug == "bad-format" else 403
        return _refused_page(request, status, f"login.refused.{e.slug}", next_path=next_path, agent=agent)
    return await run_in_threadpool(_logged_in, request, facts, cert_der, source, next_path)


@router.post("/login/tls", summary="Login with the connection's TLS client certificate")
async def login_tls(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    from unica.errors import LoginRefused
    from unica.portal.login import verify_tls_login
    from unica.service.identity import client_of

    pages.check_same_origin(request)
    source = pages.source_of(request)
    try:
        fields = await _login_fields(request)
    except (ValueError, UnicodeDecodeError):
        fields = {}
    next_path = fields.get("next")
    limited = _rate_limited(request, source, next_path, None)
    if limited is not None:
        return limited
    cert_der = client_of(request.scope, request.app.state.settings).cert_der
    if cert_der is None:
        return _refused_page(request, 400, "login.error.no-tls-cert", next_path=next_path, agent=None)
    try:
        facts = await run_in_threadpool(verify_tls_login, request.app.state.store, cert_der=cert_der, source=source)
    except LoginRefused as e:
        limiter(request).failed(source)
        status = 400 if e.slug == "bad-format" else 403
        return _refused_page(request, status, f"login.refused.{e.slug}", next_path=next_path, agent=None)
    return await run_in_threadpool(_logged_in, request, facts, cert_der, source, next_path)


@router.post("/logout", summary="End the session (CSRF-checked)")
async def logout(request: Request) -> Response:
    from unica.portal.sessions import end_session

    _session, form = await pages.require_post(request)
    end_session(request.app.state.store, websession.session_token(request))
    nxt = form.get("next")
    target = websession.safe_next(nxt) if isinstance(nxt, str) and nxt else pages.login_url(ended="logout")
    response = pages.redirect(target)
    websession.clear_session_cookie(response)
    return response


#: role -> (path, catalogue key) of the role's pages (shown on the home page when the path exists)
ROLE_PAGES = (("enterprise", "/enterprise", "page.enterprise"), ("ra-officer", "/ra", "page.ra"),
              ("auditor", "/audit", "page.audit"))


def _page_of(app, prefix: str) -> str | None:
    """``prefix`` (or ``prefix/``) if a page answers there, else the first page under it without
    path parameters, else None."""
    paths = [p for r in app.routes if (p := getattr(r, "path", None)) and "GET" in (getattr(r, "methods", None) or ())]
    for p in (prefix, prefix + "/"):
        if p in paths:
            return p
    return next((p for p in paths if p.startswith(prefix + "/") and "{" not in p), None)


def _systems(store) -> list[dict]:
    from urllib.parse import urlsplit

    from unica.sso.clients import list_clients

    out = []
    for c in list_clients(store):
        if c.status != "active" or not c.redirect_uris:
            continue
        parts = urlsplit(c.redirect_uris[0])
        out.append({"name": c.name, "href": f"{parts.scheme}://{parts.netloc}/"})
    return out


@router.get("/", summary="The portal's home page")
def home(request: Request) -> Response:
    from unica.portal import i18n
    from unica.portal.views import viewer

    session = pages.require_session(request)
    store = request.app.state.store
    v = viewer(store, session)  # read at this request, as the role pages read it
    allowed = {"enterprise": bool(v.enterprise), "ra-officer": v.is_officer, "auditor": v.is_auditor}
    links = [{"href": href, "key": k} for role, p, k in ROLE_PAGES
             if allowed[role] and (href := _page_of(request.app, p)) is not None]
    return pages.render(request, "home.html", {"session": session, "pages": links, "roles": v.roles or
                                               session.facts.roles, "systems": _systems(store),
                                               "has_key": i18n.has})


@router.get("/static/{name}", summary="The portal's CSS and script")
def static(name: str) -> Response:
    ctype = STATIC_TYPES.get(name)
    if ctype is None:
        raise pages.PageError(404, "error.not-found")
    return Response((pages.STATIC / name).read_bytes(), media_type=ctype,
                    headers={"Cache-Control": "public, max-age=300"})
