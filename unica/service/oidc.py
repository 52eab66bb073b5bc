"""The OpenID Connect provider's public face: discovery and the JWK Set (issue #14).

``GET /.well-known/openid-configuration`` and ``GET /oidc/jwks``: thin handlers over
:mod:`unica.sso.discovery`. The authorization and token endpoints (``/oidc/authorize``,
``/oidc/token``) need the portal's sessions and come later; the discovery document names them
already.

The issuer URL: ``settings.extra["oidc_issuer"]`` when set; else the address this service
answers on, as the listening socket (not the client's Host header) gives it:
``https://HOST:PORT`` (no port for 443). In proxy mode (no TLS here) the public URL is the
proxy's, which the service cannot know: without a configured issuer the answer is 503.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

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

    return _json(discovery(issuer_of(request)))


@router.get("/oidc/jwks", summary="The JWK Set ID tokens are verified with (active and retired keys)")
def jwks_document(request: Request) -> JSONResponse:
    from unica.sso.discovery import jwks

    return _json(jwks(request.app.state.store))
