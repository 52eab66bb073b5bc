"""The authorization code flow with PKCE (OpenID Connect Core 1.0, 3.1; RFC 6749 4.1; RFC 7636):
the provider's grant logic, below the HTTP endpoints of :mod:`unica.service.oidc`.

1. :func:`check_client` -- ``client_id`` names an active agency system and ``redirect_uri`` is,
   character for character, one of its registered redirect URIs. Anything else raises
   :class:`ClientRefused`: the browser is NOT sent anywhere (an open redirect otherwise).
2. :func:`check_request` -- ``response_type=code`` only, ``scope`` includes ``openid``, PKCE with
   ``code_challenge_method=S256`` required (no challenge, or ``plain``, is a downgrade and is
   refused), nonce and state bounded. Raises :class:`AuthorizeRefused` (the endpoint sends the
   error back to the -- verified -- redirect URI with the state).
3. :func:`issue_code` -- for a live portal session: a code of 256 random bits, valid
   :data:`CODE_TTL`, one use, bound to the client, the redirect URI, the PKCE challenge and the
   session; only its SHA-256 is stored (``sso_codes``).
4. :func:`authenticate_client` then :func:`redeem_code` at the token endpoint: the confidential
   client's secret (public clients have none: PKCE alone binds the code to them); the code is
   the client's, for the same redirect URI, unexpired, and the verifier matches the challenge;
   the session it was made in is still live. The code is consumed by a conditional UPDATE that
   also records the access token's SHA-256: of two concurrent redemptions one wins. A second use
   is refused and revokes the access token the first gave (RFC 6749 10.5).
5. :func:`userinfo` -- the claims for an unexpired, unrevoked access token of a live session.

Refusals at the token endpoint are :class:`GrantRefused` with the RFC 6749 5.2 error code.
PKCE's S256 transform and the syntax of verifiers and challenges come from Authlib
(:mod:`authlib.oauth2.rfc7636`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update

from unica.errors import PolicyViolation, UnicaError
from unica.store import models as m

__all__ = ["CODE_TTL", "ACCESS_TTL", "ClientRefused", "AuthorizeRefused", "GrantRefused", "AuthRequest", "Grant",
           "check_client", "check_request", "issue_code", "authenticate_client", "redeem_code", "userinfo",
           "check_logout_redirect"]

#: how long an authorization code may be redeemed
CODE_TTL = dt.timedelta(seconds=60)
#: how long an access token (for the userinfo endpoint) is valid
ACCESS_TTL = dt.timedelta(seconds=300)
#: the longest state and nonce taken
MAX_STATE = 1024
MAX_NONCE = 255
#: codes and access tokens on the wire: 43 characters of base64url
MAX_TOKEN = 64


class ClientRefused(PolicyViolation):
    """Unknown or disabled client, or a redirect URI that is not exactly a registered one: shown
    to the user, never redirected to."""


class AuthorizeRefused(PolicyViolation):
    """An authorization request refused after its client and redirect URI were verified:
    ``error`` (RFC 6749 4.1.2.1 / OpenID Connect Core 3.1.2.6) goes back to the client."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error = error
        self.description = description


class GrantRefused(UnicaError):
    """A token or userinfo request refused: ``error`` (RFC 6749 5.2 / RFC 6750 3.1), ``status``."""

    exit_code = 3

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class AuthRequest:
    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str


@dataclass(frozen=True)
class Grant:
    """What a redeemed code gives: the login's facts for the ID token, and an access token."""

    facts: object  # LoginFacts
    client_id: str
    nonce: str | None
    auth_time: dt.datetime
    scope: str
    access_token: str
    expires_in: int
    session_id: int


def _now(now: dt.datetime | None) -> dt.datetime:
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        raise ValueError("now must be aware")
    return now


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("ascii")).hexdigest()


def _visible(value: str, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and all(0x21 <= ord(c) <= 0x7e for c in value)


def check_client(store, client_id: str | None, redirect_uri: str | None):
    """The active client ``client_id`` if ``redirect_uri`` is exactly one of its redirect URIs;
    else :class:`ClientRefused`."""
    from unica.sso.clients import active_client
    from unica.sso.errors import SSOClientDisabled, SSOClientNotFound

    if not client_id:
        raise ClientRefused("the request names no client_id")
    try:
        client = active_client(store, client_id)
    except (SSOClientNotFound, SSOClientDisabled) as e:
        raise ClientRefused(f"unknown or disabled agency system: {e}") from None
    if not redirect_uri:
        raise ClientRefused("the request names no redirect_uri (it must be one of the agency system's registered ones)")
    if redirect_uri not in client.redirect_uris:  # exact string comparison, no normalisation
        raise ClientRefused("the redirect_uri is not one registered for this agency system")
    return client


def check_request(*, client_id: str, redirect_uri: str, response_type, scope, state, nonce, code_challenge,
                  code_challenge_method) -> AuthRequest:
    """The rest of an authorization request (after :func:`check_client`); :class:`AuthorizeRefused`."""
    from authlib.oauth2.rfc7636.challenge import CODE_CHALLENGE_PATTERN

    if state is not None and not _visible(state, MAX_STATE):
        raise AuthorizeRefused("invalid_request", f"state: 1 to {MAX_STATE} visible ASCII characters")
    if response_type != "code":
        raise AuthorizeRefused("unsupported_response_type", "only response_type=code is served")
    scopes = (scope or "").split(" ")
    if "openid" not in scopes:
        raise AuthorizeRefused("invalid_scope", "scope must include openid")
    if nonce is not None and not _visible(nonce, MAX_NONCE):
        raise AuthorizeRefused("invalid_request", f"nonce: 1 to {MAX_NONCE} visible ASCII characters")
    if not code_challenge:
        raise AuthorizeRefused("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256")
    if code_challenge_method != "S256":
        raise AuthorizeRefused("invalid_request", "code_challenge_method must be S256 (plain is refused)")
    if not CODE_CHALLENGE_PATTERN.match(code_challenge) or len(code_challenge) != 43:
        raise AuthorizeRefused("invalid_request", "code_challenge: the 43-character base64url SHA-256 of the verifier")
    return AuthRequest(client_id, redirect_uri, "openid", state, nonce, code_challenge)


def issue_code(store, req: AuthRequest, session, *, now: dt.datetime | None = None) -> str:
    """A new authorization code for ``req`` in the live portal ``session``
    (:class:`~unica.portal.sessions.Session`); the code is returned only here."""
    now = _now(now)
    code = secrets.token_urlsafe(32)
    with store.write() as s:
        s.add(m.SSOCode(code_sha256=_digest(code), client_id=req.client_id, redirect_uri=req.redirect_uri,
                        scope=req.scope, nonce=req.nonce, code_challenge=req.code_challenge,
                        code_challenge_method="S256", session_id=session.id, auth_time=session.facts.auth_time,
                        created_at=now, expires_at=now + CODE_TTL))
        # codes expired long ago are of no use: delete them with the issuance of new ones
        s.execute(m.SSOCode.__table__.delete().where(m.SSOCode.expires_at < now - dt.timedelta(days=1),
                                                     m.SSOCode.access_token_sha256.is_(None)))
    return code


def authenticate_client(store, client_id: str | None, secret: str | None):
    """The client of a token request: a confidential client must present its secret, a public
    one must not present any. Refusal: ``invalid_client`` (401)."""
    from unica.sso.clients import active_client, secret_matches
    from unica.sso.errors import SSOClientDisabled, SSOClientNotFound

    if not client_id:
        raise GrantRefused("invalid_client", "no client authentication", 401)
    try:
        client = active_client(store, client_id)
    except (SSOClientNotFound, SSOClientDisabled):
        raise GrantRefused("invalid_client", "unknown or disabled client", 401) from None
    with store.read() as s:
        stored = s.scalar(select(m.SSOClient.secret_hash).where(m.SSOClient.client_id == client_id))
    if stored is None:
        if secret:
            raise GrantRefused("invalid_client", "a public client has no secret", 401)
        return client
    if not secret or not secret_matches(stored, secret):
        raise GrantRefused("invalid_client", "client authentication failed", 401)
    return client


def _session_live(s, session_id: int, now: dt.datetime):
    """The live session row ``session_id``, or None (ended, expired or idle)."""
    from unica.portal.sessions import IDLE_TIMEOUT  # the same limit as current_session

    row = s.get(m.PortalSession, session_id)
    if row is None or row.ended_at is not None or now >= _aware(row.expires_at):
        return None
    if now - _aware(row.last_seen_at) >= IDLE_TIMEOUT:
        return None
    return row


def redeem_code(store, *, code: str | None, client, redirect_uri: str | None, code_verifier: str | None,
                now: dt.datetime | None = None) -> Grant:
    """Exchange ``code`` for ``client`` (from :func:`authenticate_client`); :class:`GrantRefused`
    (``invalid_grant`` / ``invalid_request``) otherwise. See the module's docstring."""
    from authlib.oauth2.rfc7636 import create_s256_code_challenge
    from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN

    from unica.portal.sessions import facts_from_json

    now = _now(now)
    if not code or not isinstance(code, str) or len(code) > MAX_TOKEN or not code.isascii():
        raise GrantRefused("invalid_request" if not code else "invalid_grant", "no valid code")
    if not redirect_uri:
        raise GrantRefused("invalid_request", "redirect_uri is required (the one of the authorization request)")
    if not code_verifier:
        raise GrantRefused("invalid_request", "code_verifier is required (PKCE)")
    if not CODE_VERIFIER_PATTERN.match(code_verifier):
        raise GrantRefused("invalid_grant", "code_verifier: 43 to 128 characters of [A-Za-z0-9-._~] (RFC 7636 4.1)")
    with store.read() as s:
        row = s.scalars(select(m.SSOCode).where(m.SSOCode.code_sha256 == _digest(code))).first()
        if row is not None:
            s.expunge(row)
    if row is None:
        raise GrantRefused("invalid_grant", "unknown code")
    # the bindings are checked before the code is consumed: whoever holds a stolen code but not
    # the client's credentials, redirect URI and verifier cannot use it up
    if not hmac.compare_digest(row.client_id, client.client_id):
        raise GrantRefused("invalid_grant", "the code was not issued to this client")
    if row.redirect_uri != redirect_uri:
        raise GrantRefused("invalid_grant", "redirect_uri is not the one of the authorization request")
    if not hmac.compare_digest(create_s256_code_challenge(code_verifier), row.code_challenge):
        raise GrantRefused("invalid_grant", "code_verifier does not match the code_challenge")
    access = secrets.token_urlsafe(32)
    with store.write() as s:
        done = s.execute(update(m.SSOCode).where(m.SSOCode.id == row.id, m.SSOCode.used_at.is_(None),
                                                 m.SSOCode.expires_at > now)
                         .values(used_at=now, access_token_sha256=_digest(access),
                                 access_expires_at=now + ACCESS_TTL)).rowcount
        if not done:
            fresh = s.get(m.SSOCode, row.id)
            if fresh.used_at is not None:
                if fresh.revoked_at is None:
                    fresh.revoked_at = now
                store.audit(s, "sso.code-replayed", target=client.name, details={
                    "client_id": client.client_id, "code": row.id, "session": row.session_id})
                replayed = True
            else:
                replayed = False
        else:
            live = _session_live(s, row.session_id, now)
            if live is None:
                s.execute(update(m.SSOCode).where(m.SSOCode.id == row.id).values(revoked_at=now))
            else:
                store.audit(s, "sso.token-issued", ca=(live.facts or {}).get("ca"), target=client.name, details={
                    "client_id": client.client_id, "code": row.id, "session": row.session_id,
                    "cert_serial": live.cert_serial})
    if not done:
        if replayed:
            raise GrantRefused("invalid_grant", "the code was already used (its tokens are revoked)")
        raise GrantRefused("invalid_grant", "the code has expired")
    if live is None:
        raise GrantRefused("invalid_grant", "the portal session of this code has ended")
    return Grant(facts_from_json(live.facts), row.client_id, row.nonce, _aware(row.auth_time), row.scope, access,
                 int(ACCESS_TTL.total_seconds()), row.session_id)


def userinfo(store, access_token: str | None, *, now: dt.datetime | None = None) -> dict:
    """The claims about the user of ``access_token`` (OpenID Connect Core 5.3): ``sub`` and the
    same claims the ID token carries about the login. :class:`GrantRefused` (``invalid_token``, 401)."""
    from unica.portal.sessions import facts_from_json
    from unica.sso.tokens import subject_of

    now = _now(now)
    if not access_token or len(access_token) > MAX_TOKEN or not access_token.isascii():
        raise GrantRefused("invalid_token", "no valid access token", 401)
    with store.read() as s:
        row = s.scalars(select(m.SSOCode).where(m.SSOCode.access_token_sha256 == _digest(access_token))).first()
        if row is None or row.revoked_at is not None or now >= _aware(row.access_expires_at):
            raise GrantRefused("invalid_token", "the access token is unknown, expired or revoked", 401)
        live = _session_live(s, row.session_id, now)
        if live is None:
            raise GrantRefused("invalid_token", "the portal session of this access token has ended", 401)
        facts = facts_from_json(live.facts)
    claims = {"sub": subject_of(facts), "name": facts.person, "uscc": facts.uscc, "enterprise": facts.enterprise,
              "cert_serial": facts.cert_serial, "cert_issuer": facts.cert_issuer, "cert_sha256": facts.cert_sha256,
              "ra_office": facts.office, "roles": list(facts.roles), "acr": facts.acr, "amr": list(facts.amr),
              "auth_time": int(facts.auth_time.timestamp())}
    return {k: v for k, v in claims.items() if v is not None}


def check_logout_redirect(store, client_id: str | None, uri: str | None) -> str | None:
    """``uri`` if it is exactly a registered redirect URI of the active client ``client_id``
    (where to send the browser after an RP-initiated logout); None when no ``uri`` is asked;
    :class:`ClientRefused` otherwise."""
    if not uri:
        return None
    check_client(store, client_id, uri)
    return uri
