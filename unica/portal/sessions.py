"""Portal sessions: what a card login opens, and what every later request of that browser is.

A session is born only from a verified login (:func:`open_session` takes the
:class:`~unica.portal.facts.LoginFacts` that :func:`unica.portal.login.verify_login` returned):
its token is made here, 256 random bits, new at every login, so a token planted in a browser
before the login is never the session's (no fixation). The browser holds the token (a Secure,
HttpOnly, SameSite=Strict cookie: the service's business); the database holds only its SHA-256,
so a copy of the database opens no session.

Every request asks :func:`current_session`, which ends the session (and says why) when:

- it was logged out (:func:`end_session`), or its token is unknown;
- it was idle longer than :data:`IDLE_TIMEOUT`, or it is older than :data:`ABSOLUTE_TIMEOUT`;
- the card's certificate no longer passes :func:`unica.service.identity.check_certificate`
  (revoked or on hold, expired, its CA revoked): a revocation ends the session at the next
  request, on every service process, since the check reads the certificate's row each time.

State-changing forms carry the session's CSRF token (synchronizer token pattern), compared in
constant time by :func:`check_csrf`. Opening and ending are audited (``portal.session-opened``,
``portal.session-ended`` with the reason); ordinary requests are not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update

from unica.errors import PolicyViolation
from unica.portal.facts import LoginFacts
from unica.store import models as m

#: a session unused this long ends
IDLE_TIMEOUT = dt.timedelta(minutes=15)
#: a session ends this long after its login, however active
ABSOLUTE_TIMEOUT = dt.timedelta(hours=8)
#: last_seen_at is written at most this often (a page with ten requests writes once)
TOUCH_EVERY = dt.timedelta(seconds=30)

#: a session token on the wire: 43 characters of base64url; anything longer is not looked up
MAX_TOKEN = 64


class SessionEnded(PolicyViolation):
    """No session for this request; ``reason``: ``unknown``, ``logout``, ``idle``, ``expired`` or
    ``certificate-refused`` (the page asks for a new card login)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class CSRFRefused(PolicyViolation):
    """A state-changing request without this session's CSRF token."""


@dataclass(frozen=True)
class Session:
    id: int
    facts: LoginFacts
    csrf_token: str
    created_at: dt.datetime
    expires_at: dt.datetime


def _now(now: dt.datetime | None) -> dt.datetime:
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        raise ValueError("now must be aware")
    return now


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def facts_to_json(facts: LoginFacts) -> dict:
    d = dataclasses.asdict(facts)
    d["roles"] = list(facts.roles)
    d["auth_time"] = facts.auth_time.isoformat()
    return d


def facts_from_json(d: dict) -> LoginFacts:
    return LoginFacts(**{**d, "roles": tuple(d["roles"]), "auth_time": dt.datetime.fromisoformat(d["auth_time"])})


def open_session(store, facts: LoginFacts, cert_der: bytes, *, source: str | None,
                 now: dt.datetime | None = None) -> tuple[str, Session]:
    """A new session for a verified login: (the token for the browser, the session). The token
    is returned only here."""
    now = _now(now)
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    with store.write() as s:
        row = m.PortalSession(token_sha256=_digest(token), csrf_token=csrf, facts=facts_to_json(facts),
                              cert_der=bytes(cert_der), cert_serial=facts.cert_serial,
                              source=(source or "")[:128] or None, created_at=now, last_seen_at=now,
                              expires_at=now + ABSOLUTE_TIMEOUT)
        s.add(row)
        s.flush()
        store.audit(s, "portal.session-opened", ca=facts.ca, target=facts.cert_serial, details={
            "session": row.id, "uscc": facts.uscc, "person": facts.person, "method": facts.method,
            "source": source, "expires_at": row.expires_at.isoformat()})
        return token, Session(row.id, facts, csrf, now, row.expires_at)


def _find(store, token) -> m.PortalSession | None:
    """The session row of ``token`` (detached), None for an unknown or malformed token (one that
    is not a string of at most MAX_TOKEN ASCII characters is not looked up)."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN or not token.isascii():
        return None
    with store.read() as s:
        row = s.scalars(select(m.PortalSession).where(m.PortalSession.token_sha256 == _digest(token))).first()
        if row is not None:
            s.expunge(row)
    return row


def current_session(store, token: str | None, *, now: dt.datetime | None = None) -> Session:
    """The live session of ``token``; :class:`SessionEnded` otherwise (ending it first when a
    timeout or the certificate's status ends it now)."""
    now = _now(now)
    row = _find(store, token)
    if row is None:
        raise SessionEnded("unknown", "no portal session: log in with the card")
    if row.ended_at is not None:
        raise SessionEnded(row.end_reason or "logout", "this portal session has ended: log in with the card again")
    if now >= _aware(row.expires_at):
        _end(store, row, "expired", now)
        raise SessionEnded("expired", "this portal session reached its time limit: log in with the card again")
    if now - _aware(row.last_seen_at) >= IDLE_TIMEOUT:
        _end(store, row, "idle", now)
        raise SessionEnded("idle", "this portal session was idle too long: log in with the card again")
    _check_card(store, row, now)
    if now - _aware(row.last_seen_at) >= TOUCH_EVERY:
        with store.write() as s:
            s.execute(update(m.PortalSession).where(m.PortalSession.id == row.id, m.PortalSession.ended_at.is_(None))
                      .values(last_seen_at=now))
    return Session(row.id, facts_from_json(row.facts), row.csrf_token, _aware(row.created_at), _aware(row.expires_at))


def _check_card(store, row: m.PortalSession, now: dt.datetime) -> None:
    from unica.service.identity import Client, check_certificate
    from unica.service.problems import Problem

    try:
        check_certificate(store, Client(row.source, bytes(row.cert_der)), now)
    except Problem as p:
        _end(store, row, "certificate-refused", now, detail=p.detail)
        raise SessionEnded("certificate-refused", f"the card's certificate is no longer accepted: {p.detail}") from None


def _end(store, row: m.PortalSession, reason: str, now: dt.datetime, *, detail: str | None = None) -> bool:
    """Mark the session ended (once: of two requests ending it, one writes) and audit it."""
    facts = row.facts or {}
    with store.write() as s:
        done = s.execute(update(m.PortalSession).where(m.PortalSession.id == row.id,
                                                       m.PortalSession.ended_at.is_(None))
                         .values(ended_at=now, end_reason=reason)).rowcount
        if done:
            store.audit(s, "portal.session-ended", ca=facts.get("ca"), target=row.cert_serial, details={
                "session": row.id, "reason": reason, **({"detail": detail} if detail else {})})
    return bool(done)


def end_session(store, token: str | None, *, reason: str = "logout", now: dt.datetime | None = None) -> bool:
    """Log out: the session of ``token`` ends now (False: there was no live one)."""
    now = _now(now)
    row = _find(store, token)
    if row is None or row.ended_at is not None:
        return False
    return _end(store, row, reason, now)


def end_sessions_of_certificate(store, cert_serial: str, *, reason: str = "certificate-refused",
                                now: dt.datetime | None = None) -> int:
    """End every live session of the card ``cert_serial`` at once (e.g. on revocation, besides the
    check at the next request); the number ended."""
    now = _now(now)
    with store.read() as s:
        rows = s.scalars(select(m.PortalSession).where(m.PortalSession.cert_serial == cert_serial,
                                                       m.PortalSession.ended_at.is_(None))).all()
        for r in rows:
            s.expunge(r)
    return sum(_end(store, r, reason, now) for r in rows)


def check_csrf(session: Session, presented: str | None) -> None:
    """Refuse (:class:`CSRFRefused`) a state-changing request whose form or header does not carry
    this session's CSRF token."""
    if not isinstance(presented, str) or not hmac.compare_digest(presented.encode("utf-8", "replace"),
                                                                  session.csrf_token.encode("ascii")):
        raise CSRFRefused("the form's CSRF token is missing or not this session's: reload the page")
