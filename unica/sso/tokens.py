"""ID tokens: what an agency system learns of one card login (OpenID Connect Core 1.0, 2).

:func:`mint_id_token` puts a :class:`~unica.portal.facts.LoginFacts` in a JWT signed by the
provider's active key through :mod:`unica.hsm` (:mod:`unica.sso.signing`): joserfc writes the
JWS, the key object makes the signature. :func:`verify_id_token` is what a relying party does
(for tests, examples and the provider's own checks): joserfc verifies the signature with the
JWKS keys, then the claims are checked.

Claims (docs/sso.md is the reference):

- standard: ``iss``, ``sub``, ``aud`` (the client_id), ``iat``, ``exp``, ``auth_time``,
  ``nonce`` (when the client sent one), ``acr`` (:data:`~unica.portal.facts.ACR_CARD`), ``amr``
  (RFC 8176), ``name`` (the person: the certificate's CN);
- unica's: ``uscc``, ``enterprise`` (O), ``cert_serial`` (lowercase hex), ``cert_issuer``
  (RFC 4514), ``cert_sha256`` (hex, of the DER), ``ra_office``, ``roles``. A fact that is not
  known is left out, never sent as null.

``sub`` is stable for one person of one enterprise across certificates and renewals:
``base64url(SHA-256("unica-sub-v1" LF uscc LF person))`` -- the enterprise's USCC and the
holder's name as the certificates carry them (the RA checks both when it approves an
application). A certificate without a USCC (not an enterprise's) gets
``base64url(SHA-256("unica-sub-v1-cert" LF issuer LF serial))``: one subject per certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

from unica.errors import InputError
from unica.sso.errors import IDTokenInvalid

__all__ = ["mint_id_token", "verify_id_token", "subject_of", "DEFAULT_LIFETIME", "MAX_TOKEN"]

#: how long an ID token is valid by default (seconds)
DEFAULT_LIFETIME = 300
#: the longest lifetime taken (an ID token is a proof of a recent login, not a session)
MAX_LIFETIME = 3600
#: the largest ID token :func:`verify_id_token` reads (bytes)
MAX_TOKEN = 16 * 1024
_MAX_NONCE = 255


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def subject_of(facts) -> str:
    """The ``sub`` of the person of ``facts`` (see the module's docstring)."""
    if facts.uscc:
        text = f"unica-sub-v1\n{facts.uscc}\n{facts.person or ''}"
    else:
        text = f"unica-sub-v1-cert\n{facts.cert_issuer}\n{facts.cert_serial}"
    return _b64(hashlib.sha256(text.encode("utf-8")).digest())


def _epoch(t: dt.datetime) -> int:
    if t.tzinfo is None:
        raise InputError("naive datetime: use timezone-aware UTC")
    return int(t.timestamp())


def _check_nonce(nonce) -> None:
    if nonce is None:
        return
    if not isinstance(nonce, str) or not 0 < len(nonce) <= _MAX_NONCE or \
            any(ord(ch) < 0x21 or ord(ch) == 0x7f for ch in nonce):
        raise InputError(f"nonce: 1 to {_MAX_NONCE} visible ASCII characters")


def _claims(facts, *, issuer: str, client_id: str, nonce, auth_time: dt.datetime, now: dt.datetime,
            lifetime: int) -> dict:
    claims = {
        "iss": issuer, "sub": subject_of(facts), "aud": client_id, "iat": _epoch(now),
        "exp": _epoch(now) + lifetime, "auth_time": _epoch(auth_time), "nonce": nonce,
        "acr": facts.acr, "amr": list(facts.amr), "name": facts.person, "uscc": facts.uscc,
        "enterprise": facts.enterprise, "cert_serial": facts.cert_serial, "cert_issuer": facts.cert_issuer,
        "cert_sha256": facts.cert_sha256, "ra_office": facts.office, "roles": list(facts.roles),
    }
    return {k: v for k, v in claims.items() if v is not None}


def _default_loader(uri: str):
    from unica.hsm import load_key

    return load_key(uri)  # PIN from UNICA_PIN, passphrase from UNICA_PASSPHRASE (or the URI's pin-source)


def mint_id_token(store, facts, *, client_id: str, issuer_url: str, nonce: str | None,
                  auth_time: dt.datetime | None = None, lifetime: int = DEFAULT_LIFETIME,
                  now: dt.datetime | None = None, load_key=None) -> str:
    """An ID token for ``client_id`` (an active registered client) about ``facts``, signed by
    the newest active key. ``auth_time`` defaults to ``facts.auth_time``; ``load_key(uri)`` loads
    the signing key (default :func:`unica.hsm.load_key`, secrets from the environment: a
    service passes its own, caching loader)."""
    from joserfc import jwt

    from unica.portal.facts import LoginFacts
    from unica.sso.clients import active_client
    from unica.sso.discovery import check_issuer_url
    from unica.sso.keys import signing_key
    from unica.sso.signing import HSMAlgorithm, joserfc_key, registry_for

    if not isinstance(facts, LoginFacts):
        raise TypeError(f"facts must be LoginFacts, not {type(facts).__name__}")
    issuer = check_issuer_url(issuer_url)
    _check_nonce(nonce)
    if isinstance(lifetime, dt.timedelta):
        lifetime = int(lifetime.total_seconds())
    if not isinstance(lifetime, int) or not 1 <= lifetime <= MAX_LIFETIME:
        raise InputError(f"an ID token's lifetime is 1 to {MAX_LIFETIME} seconds")
    now = now or dt.datetime.now(dt.timezone.utc)
    auth_time = auth_time or facts.auth_time
    if auth_time.tzinfo is None or now.tzinfo is None:
        raise InputError("naive datetime: use timezone-aware UTC")
    if auth_time > now + dt.timedelta(seconds=5):
        raise InputError("auth_time is in the future")
    client = active_client(store, client_id)
    row = signing_key(store)
    key = (load_key or _default_loader)(row.key_uri)
    public = joserfc_key(row.public_jwk)
    claims = _claims(facts, issuer=issuer, client_id=client.client_id, nonce=nonce, auth_time=auth_time, now=now,
                     lifetime=lifetime)
    alg = HSMAlgorithm(row.alg, key, row.kid)
    return jwt.encode({"alg": row.alg, "kid": row.kid}, claims, public, registry=registry_for(alg))


def verify_id_token(token: str, jwks: dict, *, issuer_url: str, client_id: str, nonce: str | None = None,
                    now: dt.datetime | None = None, leeway: int = 0) -> dict:
    """Check ``token`` as a relying party would, with the JWK Set ``jwks`` (e.g.
    :func:`unica.sso.discovery.jwks`); return its claims. Raises :class:`IDTokenInvalid` with a
    ``reason``."""
    from joserfc import jwt
    from joserfc.errors import BadSignatureError, JoseError
    from joserfc.jwk import KeySet

    from unica.sso.signing import ALGORITHMS, joserfc_key

    if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 2:
        raise IDTokenInvalid("malformed", "not a compact JWS of at most 16 KiB")
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys", []), list):
        raise IDTokenInvalid("malformed", "the JWK Set is not a JSON object with a 'keys' list")
    try:
        keys = {k["kid"]: joserfc_key(k) for k in jwks.get("keys", ()) if k.get("alg") in ALGORITHMS}
    except (KeyError, TypeError, ValueError, JoseError) as e:
        raise IDTokenInvalid("malformed", f"the JWK Set is not usable: {e}") from None
    from joserfc.jws import extract_compact

    try:
        header = extract_compact(token.encode("ascii")).headers()
    except (JoseError, ValueError, TypeError, UnicodeError) as e:
        raise IDTokenInvalid("malformed", f"the ID token does not parse: {e}") from None
    kid, alg = header.get("kid"), header.get("alg")
    if not isinstance(kid, str) or kid not in keys:
        raise IDTokenInvalid("unknown-key", f"the ID token names key {kid!r}, not in the provider's JWKS")
    if alg != keys[kid].alg or alg not in ALGORITHMS:
        raise IDTokenInvalid("bad-signature", f"the ID token's alg {alg!r} is not its key's ({keys[kid].alg})")
    try:
        decoded = jwt.decode(token, KeySet([keys[kid]]), algorithms=[alg])
    except BadSignatureError:
        raise IDTokenInvalid("bad-signature", "the ID token's signature does not verify") from None
    except (JoseError, ValueError) as e:
        raise IDTokenInvalid("malformed", f"the ID token does not parse: {e}") from None
    claims = decoded.claims
    return _check_claims(claims, issuer_url=issuer_url, client_id=client_id, nonce=nonce,
                         now=now or dt.datetime.now(dt.timezone.utc), leeway=leeway)


def _check_claims(claims: dict, *, issuer_url: str, client_id: str, nonce, now: dt.datetime, leeway: int) -> dict:
    for name in ("iss", "sub", "aud", "exp", "iat"):
        if name not in claims:
            raise IDTokenInvalid("missing-claim", f"the ID token has no {name!r} claim")
    if claims["iss"] != issuer_url:
        raise IDTokenInvalid("wrong-issuer", f"the ID token's issuer is {claims['iss']!r}, not {issuer_url!r}")
    aud = claims["aud"]
    auds = aud if isinstance(aud, list) else [aud]
    if client_id not in auds or (len(auds) > 1 and claims.get("azp") != client_id):
        raise IDTokenInvalid("wrong-audience", f"the ID token is not for client {client_id!r}")
    t = _epoch(now)
    if not isinstance(claims["exp"], int) or not isinstance(claims["iat"], int):
        raise IDTokenInvalid("malformed", "exp and iat must be integers")
    if t >= claims["exp"] + leeway:
        raise IDTokenInvalid("expired", "the ID token has expired")
    if claims["iat"] > t + leeway:
        raise IDTokenInvalid("not-yet-valid", "the ID token is issued in the future")
    if nonce is not None and claims.get("nonce") != nonce:
        raise IDTokenInvalid("wrong-nonce", "the ID token's nonce is not the one the client sent")
    return claims
