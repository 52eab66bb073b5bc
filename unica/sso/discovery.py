"""The provider's public documents: the JWKS (RFC 7517) and the discovery document (OpenID
Connect Discovery 1.0, section 3).

The authorization and token endpoints the discovery document names (``/oidc/authorize``,
``/oidc/token``) come with the portal's sessions, in a later step of issue #14; their paths are
fixed here so agency systems can be configured now.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from unica.errors import InputError

__all__ = ["jwks", "discovery", "check_issuer_url", "CLAIMS", "SCOPES", "AUTHORIZE_PATH", "TOKEN_PATH",
           "JWKS_PATH", "DISCOVERY_PATH"]

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/oidc/jwks"
AUTHORIZE_PATH = "/oidc/authorize"
TOKEN_PATH = "/oidc/token"

#: the claims an ID token may carry (docs/sso.md says what each holds)
CLAIMS = ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "name", "uscc", "enterprise",
          "cert_serial", "cert_issuer", "cert_sha256", "ra_office", "roles")

#: the scopes a client may ask for
SCOPES = ("openid",)

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_issuer_url(url: str) -> str:
    """``url`` if it can be the issuer identifier: ``https://host[:port][/path]`` (``http`` only on
    127.0.0.1, ::1 or localhost), no query, no fragment, no trailing slash (OpenID Connect
    Discovery 1.0, 3: it is compared exactly)."""
    if not isinstance(url, str) or not url or len(url) > 512:
        raise InputError(f"issuer URL {url!r}: empty or too long")
    try:
        p = urlsplit(url)
        p.port
    except ValueError as e:
        raise InputError(f"issuer URL {url!r}: not a URL ({e})") from None
    if p.scheme not in ("https", "http") or not p.hostname:
        raise InputError(f"issuer URL {url!r}: must be https://host[:port][/path]")
    if p.scheme == "http" and p.hostname not in _LOOPBACK:
        raise InputError(f"issuer URL {url!r}: http only on 127.0.0.1, ::1 or localhost")
    if p.query or p.fragment or "?" in url or "#" in url or "@" in p.netloc or url.endswith("/"):
        raise InputError(f"issuer URL {url!r}: no query, fragment, user information or trailing '/'")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise InputError(f"issuer URL {url!r}: spaces or control characters")
    return url


def jwks(store) -> dict:
    """The JWK Set agency systems verify ID tokens with: the active keys and the retired ones
    (tokens they signed stay verifiable until they expire), public members only."""
    from unica.sso.keys import published_keys

    return {"keys": [dict(k.public_jwk) for k in published_keys(store)]}


def discovery(issuer_url: str, *, algorithms=None) -> dict:
    """The discovery document of the provider ``issuer_url``. ``algorithms``: the ID-token
    signing algorithms to announce (default: every one unica's keys may use)."""
    from unica.portal.facts import ACR_CARD
    from unica.sso.signing import ALGORITHMS

    issuer = check_issuer_url(issuer_url)
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + AUTHORIZE_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(algorithms or ALGORITHMS),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": list(CLAIMS),
        "acr_values_supported": [ACR_CARD],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }
