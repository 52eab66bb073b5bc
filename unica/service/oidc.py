"""The OpenID Connect provider's public face: discovery and the JWK Set (issue #14).

``GET /.well-known/openid-configuration`` and ``GET /oidc/jwks``: thin handlers over
:mod:`unica.sso.discovery`. The authorization code flow with PKCE (:mod:`unica.sso.flow` holds
its rules): ``GET /oidc/authorize`` (the browser, with its portal session), ``POST /oidc/token``
(the agency system, server to server), ``GET /oidc/userinfo`` (Bearer access token), and
RP-initiated logout ``GET``/``POST /oidc/logout`` (a confirmation page whose form carries the
session's CSRF token; it ends the portal session, then returns to the agency system only at a
registered redirect URI of that client).

The issuer URL: ``settings.extra["oidc_issuer"]`` when set; else the address this service
answers on, as the listening socket (not the client's Host header) gives it:
``https://HOST:PORT`` (no port for 443). In proxy mode (no TLS here) the public URL is the
proxy's, which the service cannot know: without a configured issuer the answer is 503.
"""

from __future__ import annotations

import base64
import json
import threading
from urllib.parse import parse_qsl, unquote, urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from unica.service.problems import Problem

router = APIRouter(tags=["oidc"])

#: how long agency systems may keep the documents (a new key signs only after they refetch:
#: docs/sso.md says to add a key this long before it is needed)
CACHE_SECONDS = 300


def issuer_of(request: Request) -> str:
    """The issuer identifier of this service (see the module's docstring)."""
    from unica.sso.discovery import check_issuer_url

    settings = request.app.state.settings
    configured = (settings.extra or {}).get("oidc_issuer")
    if configured:
        return check_issuer_url(configured)
    if settings.tls_cert is None:
        raise Problem(503, "not-configured", detail="the OpenID Connect issuer URL is not configured (proxy mode: "
                                                    "the service cannot know its public URL)")
    host, port = request.scope.get("server") or (None, None)
    if not host:
        raise Problem(503, "not-configured", detail="the service's own address is unknown")
    shown = f"[{host}]" if ":" in host else host
    return check_issuer_url(f"https://{shown}" + ("" if port == 443 else f":{port}"))


def _json(body: dict) -> JSONResponse:
    return JSONResponse(body, headers={"Cache-Control": f"public, max-age={CACHE_SECONDS}"})


@router.get("/.well-known/openid-configuration", summary="OpenID Connect discovery document")
def openid_configuration(request: Request) -> JSONResponse:
    from unica.sso.discovery import discovery

    doc = discovery(issuer_of(request))
    # the endpoints this service serves besides those unica.sso.discovery names
    doc["userinfo_endpoint"] = doc["issuer"] + USERINFO_PATH
    doc["end_session_endpoint"] = doc["issuer"] + LOGOUT_PATH
    return _json(doc)


@router.get("/oidc/jwks", summary="The JWK Set ID tokens are verified with (active and retired keys)")
def jwks_document(request: Request) -> JSONResponse:
    from unica.sso.discovery import jwks

    return _json(jwks(request.app.state.store))


# --- the authorization code flow (issue #14, second slice) ------------------------------------

USERINFO_PATH = "/oidc/userinfo"
LOGOUT_PATH = "/oidc/logout"
#: the largest token request body read (bytes): a few short parameters
MAX_FORM = 8192

#: the headers of every page and redirect of the flow: no caching (codes are in URLs), no
#: referrer (the code must not leak to a third party), no framing, only this origin's resources
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_KEYS_LOCK = threading.Lock()


def _key_loader(request: Request):
    """A loader of the ID-token key that keeps each loaded key for the process (one PKCS#11 login
    per process, not per token); signatures are made one at a time."""
    state = request.app.state
    with _KEYS_LOCK:
        if not hasattr(state, "oidc_keys"):
            state.oidc_keys = {}

    def load(uri: str):
        from unica.hsm import load_key

        with _KEYS_LOCK:
            key = state.oidc_keys.get(uri)
            if key is None:
                key = state.oidc_keys[uri] = load_key(uri)
            return key

    return load


_MINT_LOCK = threading.Lock()


def _secured(response: Response) -> Response:
    """The portal's security headers (:func:`unica.service.pages.secure`), no caching, no referrer."""
    from unica.service import pages

    csp = response.headers.get("content-security-policy", pages.CSP)  # a page's own (pages.render's form_action)
    pages.secure(response)
    response.headers.update(_PAGE_HEADERS)
    response.headers["Content-Security-Policy"] = csp
    return response


def _error(request: Request, status: int, key: str, **fields) -> Response:
    """The portal's error page with the catalogue's ``key`` (never a redirect)."""
    from unica.portal import i18n
    from unica.service import pages

    return _secured(pages.error_page(request, status, message=i18n.text(key, pages.language(request), **fields)))


def _logout_page(request: Request, session, hidden: list) -> Response:
    from unica.service import pages

    # the POST's redirect goes to the (exactly registered) post-logout URI: browsers check
    # form-action on it too
    target = dict(hidden).get("post_logout_redirect_uri")
    origin = pages.origin_of(target) if target else None
    r = _secured(pages.render(request, "oidc_logout.html", {"session": session, "done": session is None,
                                                             "hidden": hidden},
                              form_action=(origin,) if origin else ()))
    # the confirmation form posts back here: under "no-referrer" a browser sends "Origin: null"
    # with it, which the same-origin check refuses; "same-origin" gives no referrer to any other site
    r.headers["Referrer-Policy"] = "same-origin"
    return r


def _single_params(request: Request) -> dict:
    """The query parameters, each at most once (RFC 6749 3.1): a repeated one is refused."""
    out: dict = {}
    for k, v in request.query_params.multi_items():
        if k in out:
            raise ValueError(k)
        out[k] = v
    return out


def _with_params(uri: str, params: dict) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return uri + ("&" if "?" in uri else "?") + query


def _redirect(uri: str) -> RedirectResponse:
    return RedirectResponse(uri, status_code=303, headers=_PAGE_HEADERS)


@router.get("/oidc/authorize", summary="OpenID Connect authorization endpoint (code flow, PKCE S256 required)",
            response_class=HTMLResponse)
def authorize(request: Request) -> Response:
    from unica.portal.sessions import SessionEnded
    from unica.service.websession import request_session
    from unica.sso.flow import AuthorizeRefused, ClientRefused, check_client, check_request, issue_code

    store = request.app.state.store
    try:
        params = _single_params(request)
    except ValueError as e:
        return _error(request, 400, "oidc.error.repeated", name=str(e))
    client_id, redirect_uri = params.get("client_id"), params.get("redirect_uri")
    try:
        check_client(store, client_id, redirect_uri)
    except ClientRefused:  # never redirect: the URI is not known to be the client's
        return _error(request, 400, "oidc.error.client")
    state = params.get("state")
    try:
        req = check_request(client_id=client_id, redirect_uri=redirect_uri, response_type=params.get("response_type"),
                            scope=params.get("scope"), state=state, nonce=params.get("nonce"),
                            code_challenge=params.get("code_challenge"),
                            code_challenge_method=params.get("code_challenge_method"))
    except AuthorizeRefused as e:
        shown_state = state if state is not None and len(state) <= 1024 else None
        return _redirect(_with_params(redirect_uri, {"error": e.error, "error_description": e.description,
                                                     "state": shown_state}))
    try:
        session = request_session(request)
    except SessionEnded as e:
        if params.get("prompt") == "none":
            return _redirect(_with_params(redirect_uri, {"error": "login_required", "state": state}))
        from unica.service.pages import to_login

        r = to_login(request, e.reason)  # the page says why (e.g. the card was revoked); a dead cookie is cleared
        r.headers.update(_PAGE_HEADERS)
        return r
    code = issue_code(store, req, session)
    return _redirect(_with_params(redirect_uri, {"code": code, "state": state}))


def _oauth_error(error: str, description: str, status: int = 400, *, basic: bool = False) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="unica"' if basic else 'Bearer error="invalid_token"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


async def _form(request: Request) -> dict:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise ValueError("the body must be application/x-www-form-urlencoded")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM):
        raise ValueError(f"the body may be at most {MAX_FORM} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise ValueError(f"the body may be at most {MAX_FORM} bytes")
    out: dict = {}
    for k, v in parse_qsl(body.decode("utf-8", "strict"), keep_blank_values=True, strict_parsing=bool(body),
                          max_num_fields=20):
        if k in out:
            raise ValueError(f"parameter {k} is repeated")
        out[k] = v
    return out


def _basic(request: Request) -> tuple[str, str] | None:
    auth = request.headers.get("authorization")
    if not auth or not auth[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        cid, secret = raw.split(":", 1)
    except (ValueError, UnicodeError):
        raise ValueError("malformed Basic credentials") from None
    return unquote(cid), unquote(secret)  # RFC 6749 2.3.1: form-urlencoded, then Basic


@router.post("/oidc/token", summary="OpenID Connect token endpoint (grant authorization_code with PKCE)")
async def token(request: Request) -> Response:
    from unica.sso.flow import GrantRefused

    try:
        form = await _form(request)
        basic = _basic(request)
    except (ValueError, UnicodeError) as e:
        return _oauth_error("invalid_request", str(e))
    if basic and ("client_secret" in form or form.get("client_id", basic[0]) != basic[0]):
        return _oauth_error("invalid_request", "one client authentication method at a time")
    client_id, secret = basic if basic else (form.get("client_id"), form.get("client_secret"))
    if form.get("grant_type") != "authorization_code":
        return _oauth_error("unsupported_grant_type", "only grant_type=authorization_code is served")
    issuer = issuer_of(request)
    loader = _key_loader(request)
    try:
        body = await run_in_threadpool(_exchange, request.app.state.store, form, client_id, secret, issuer, loader)
    except GrantRefused as e:
        return _oauth_error(e.error, e.description, e.status, basic=basic is not None)
    return JSONResponse(body, headers=_NO_STORE)


def _exchange(store, form: dict, client_id, secret, issuer: str, loader) -> dict:
    from unica.sso.flow import authenticate_client, redeem_code
    from unica.sso.tokens import DEFAULT_LIFETIME, mint_id_token

    client = authenticate_client(store, client_id, secret)
    grant = redeem_code(store, code=form.get("code"), client=client, redirect_uri=form.get("redirect_uri"),
                        code_verifier=form.get("code_verifier"))
    with _MINT_LOCK:
        id_token = mint_id_token(store, grant.facts, client_id=client.client_id, issuer_url=issuer, nonce=grant.nonce,
                                 auth_time=grant.auth_time, lifetime=DEFAULT_LIFETIME, load_key=loader)
    return {"access_token": grant.access_token, "token_type": "Bearer", "expires_in": grant.expires_in,
            "id_token": id_token, "scope": grant.scope}


@router.get(USERINFO_PATH, summary="OpenID Connect userinfo (Bearer access token from the token endpoint)")
def userinfo_endpoint(request: Request) -> Response:
    from unica.sso.flow import GrantRefused, userinfo

    auth = request.headers.get("authorization") or ""
    if auth[:7].lower() != "bearer ":
        return _oauth_error("invalid_token", "send the access token as Authorization: Bearer", 401)
    try:
        claims = userinfo(request.app.state.store, auth[7:].strip())
    except GrantRefused as e:
        return _oauth_error(e.error, e.description, e.status)
    return JSONResponse(claims, headers=_NO_STORE)


def _logout_target(request: Request, params: dict) -> tuple[str | None, str | None]:
    """(the post-logout redirect URI, the client_id) of an RP-initiated logout, checked: the URI
    must be exactly a registered redirect URI of the client named by ``client_id`` or by the
    ``aud`` of ``id_token_hint`` (verified with this provider's keys; it may have expired)."""
    from unica.sso.discovery import jwks
    from unica.sso.errors import IDTokenInvalid
    from unica.sso.flow import ClientRefused, check_logout_redirect
    from unica.sso.tokens import verify_id_token

    client_id = params.get("client_id")
    hint = params.get("id_token_hint")
    store = request.app.state.store
    if hint:
        from joserfc.errors import JoseError
        from joserfc.jws import extract_compact

        try:
            aud = json.loads(extract_compact(hint.encode("ascii")).payload).get("aud")
            if not isinstance(aud, str):
                raise ValueError("aud")
            # an expired hint still names its client (the session may outlive the ID token)
            verify_id_token(hint, jwks(store), issuer_url=issuer_of(request), client_id=aud, leeway=8 * 3600)
        except (IDTokenInvalid, JoseError, ValueError, UnicodeError, AttributeError, TypeError) as e:
            raise ClientRefused(f"id_token_hint does not verify ({type(e).__name__})") from None
        if client_id and client_id != aud:
            raise ClientRefused("client_id is not the audience of id_token_hint")
        client_id = aud
    uri = params.get("post_logout_redirect_uri")
    return check_logout_redirect(store, client_id, uri), client_id


@router.get(LOGOUT_PATH, summary="End the portal session (RP-initiated logout: a confirmation page)",
            response_class=HTMLResponse)
def logout_page(request: Request) -> Response:
    from unica.portal.sessions import SessionEnded
    from unica.service.websession import request_session
    from unica.sso.flow import ClientRefused

    try:
        params = _single_params(request)
        target, client_id = _logout_target(request, params)
    except ValueError as e:
        return _error(request, 400, "oidc.error.repeated", name=str(e))
    except ClientRefused:
        return _error(request, 400, "oidc.error.logout-target")
    state = params.get("state")
    if state is not None and (len(state) > 1024 or not state.isprintable()):
        return _error(request, 400, "oidc.error.state")
    try:
        session = request_session(request)
    except SessionEnded:  # nothing to end: straight back to the agency system, or a page
        if target:
            return _redirect(_with_params(target, {"state": state}))
        return _logout_page(request, None, [])
    hidden = [(k, v) for k, v in (("client_id", client_id), ("post_logout_redirect_uri", target), ("state", state)) if v]
    return _logout_page(request, session, hidden)


@router.post(LOGOUT_PATH, summary="End the portal session (the confirmation form, CSRF token required)",
             response_class=HTMLResponse)
async def logout(request: Request) -> Response:
    from unica.portal.sessions import CSRFRefused, SessionEnded, check_csrf, end_session
    from unica.service.websession import clear_session_cookie, request_session, session_token
    from unica.service.pages import PageError, check_same_origin
    from unica.sso.flow import ClientRefused

    try:
        check_same_origin(request)
    except PageError:
        return _error(request, 403, "error.origin")
    try:
        form = await _form(request)
    except (ValueError, UnicodeError):
        return _error(request, 400, "error.invalid")
    store = request.app.state.store
    try:
        session = await run_in_threadpool(request_session, request)
        check_csrf(session, form.get("csrf_token"))
    except SessionEnded:
        session = None
    except CSRFRefused:
        return _error(request, 403, "error.csrf")
    try:
        target, _ = await run_in_threadpool(_logout_target, request, {k: form.get(k) for k in
                                                                      ("client_id", "post_logout_redirect_uri")})
    except ClientRefused:
        return _error(request, 400, "oidc.error.logout-target")
    if session is not None:
        await run_in_threadpool(end_session, store, session_token(request))
    r = _redirect(_with_params(target, {"state": form.get("state")})) if target else _logout_page(request, None, [])
    clear_session_cookie(r)
    return r
