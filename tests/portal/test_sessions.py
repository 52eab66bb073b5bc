"""Portal sessions (unica.portal.sessions) on a real CA: opened only from a verified card login,
the token kept only as a hash, idle and absolute timeouts, logout, a revoked card ending its
sessions at the next request, CSRF tokens; every end audited once."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.login.conftest import PORTAL, USCC, login_ca  # noqa: F401 (the fixture)
from unica.portal.login import issue_challenge, verify_login
from unica.portal.sessions import (ABSOLUTE_TIMEOUT, IDLE_TIMEOUT, CSRFRefused, SessionEnded, check_csrf,
                                   current_session, end_session, end_sessions_of_certificate, open_session)

SOURCE = "192.0.2.9"


@pytest.fixture(scope="module")
def store(login_ca):  # noqa: F811
    return login_ca.store()


def _login(login_ca, store, cn: str):  # noqa: F811
    """A real card login with a fresh software-key certificate: (facts, certificate DER)."""
    keyf, _, der = login_ca.software_cert(cn)
    key = serialization.load_pem_private_key(keyf.read_bytes(), None)
    text = issue_challenge(store, PORTAL, source=SOURCE)
    sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    return verify_login(store, origin=PORTAL, challenge_text=text, signature=sig, cert_der=der, source=SOURCE), der


def _ended(store, session_id: int) -> list:
    from sqlalchemy import select

    from unica.store import models as m

    with store.read() as s:
        return [e.details["reason"] for e in s.scalars(select(m.AuditEntry).where(
            m.AuditEntry.event == "portal.session-ended")).all() if e.details.get("session") == session_id]


def _row(store, session_id: int):
    from unica.store import models as m

    with store.read() as s:
        row = s.get(m.PortalSession, session_id)
        s.expunge(row)
        return row


def test_a_login_opens_a_session_whose_token_is_kept_only_as_a_hash(login_ca, store):  # noqa: F811
    facts, der = _login(login_ca, store, "王五")
    token, session = open_session(store, facts, der, source=SOURCE)
    again = current_session(store, token)
    assert again.id == session.id and again.facts == facts and again.facts.uscc == USCC
    assert again.csrf_token == session.csrf_token and len(token) == 43
    row = _row(store, session.id)
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(row.__dict__) and token not in str(row.facts)
    assert row.expires_at.replace(tzinfo=dt.timezone.utc) - row.created_at.replace(tzinfo=dt.timezone.utc) \
        == ABSOLUTE_TIMEOUT
    # a second login of the same card is another session, with another token and CSRF token
    token2, session2 = open_session(store, facts, der, source=SOURCE)
    assert token2 != token and session2.id != session.id and session2.csrf_token != session.csrf_token


def test_unknown_and_malformed_tokens_open_nothing(store):
    for token in (None, "", "a" * 43, "x" * 65, "令牌", "a b"):
        with pytest.raises(SessionEnded) as e:
            current_session(store, token)
        assert e.value.reason == "unknown"
    assert end_session(store, "a" * 43) is False


def test_idle_and_absolute_timeouts(login_ca, store):  # noqa: F811
    facts, der = _login(login_ca, store, "赵六")
    t0 = dt.datetime.now(dt.timezone.utc)
    token, s = open_session(store, facts, der, source=SOURCE, now=t0)
    # activity keeps it: each request well inside the idle timeout moves last_seen on
    t = t0
    for _ in range(3):
        t += IDLE_TIMEOUT - dt.timedelta(minutes=1)
        assert current_session(store, token, now=t).id == s.id
    # idle too long: ended, once, audited
    with pytest.raises(SessionEnded) as e:
        current_session(store, token, now=t + IDLE_TIMEOUT)
    assert e.value.reason == "idle"
    with pytest.raises(SessionEnded) as e:
        current_session(store, token, now=t)
    assert e.value.reason == "idle"
    assert _ended(store, s.id) == ["idle"]
    # however active, a session ends at its absolute limit
    token, s = open_session(store, facts, der, source=SOURCE, now=t0)
    t = t0
    while t + IDLE_TIMEOUT / 2 < t0 + ABSOLUTE_TIMEOUT:
        t += IDLE_TIMEOUT / 2
        current_session(store, token, now=t)
    with pytest.raises(SessionEnded) as e:
        current_session(store, token, now=t0 + ABSOLUTE_TIMEOUT)
    assert e.value.reason == "expired" and _ended(store, s.id) == ["expired"]


def test_logout_ends_the_session(login_ca, store):  # noqa: F811
    facts, der = _login(login_ca, store, "孙七")
    token, s = open_session(store, facts, der, source=SOURCE)
    other, s2 = open_session(store, facts, der, source=SOURCE)
    assert end_session(store, token) is True
    assert end_session(store, token) is False
    with pytest.raises(SessionEnded) as e:
        current_session(store, token)
    assert e.value.reason == "logout" and _ended(store, s.id) == ["logout"]
    assert current_session(store, other).id == s2.id  # the other browser's session stays


def test_revoking_the_card_ends_its_sessions_at_the_next_request(login_ca, store):  # noqa: F811
    facts, der = _login(login_ca, store, "周八")
    token, s = open_session(store, facts, der, source=SOURCE)
    assert current_session(store, token).id == s.id
    login_ca.ok("cert", "revoke", facts.cert_serial, "--ca", "root", "--reason", "keyCompromise")
    with pytest.raises(SessionEnded) as e:
        current_session(store, token)
    assert e.value.reason == "certificate-refused" and "revoked" in str(e.value)
    assert _ended(store, s.id) == ["certificate-refused"]
    with pytest.raises(SessionEnded):
        current_session(store, token)
    assert _ended(store, s.id) == ["certificate-refused"]  # ended once


def test_ending_every_session_of_a_card(login_ca, store):  # noqa: F811
    facts, der = _login(login_ca, store, "吴九")
    tokens = [open_session(store, facts, der, source=SOURCE)[0] for _ in range(3)]
    assert end_sessions_of_certificate(store, facts.cert_serial) == 3
    assert end_sessions_of_certificate(store, facts.cert_serial) == 0
    for t in tokens:
        with pytest.raises(SessionEnded):
            current_session(store, t)


def test_csrf_token_is_the_sessions_own(login_ca, store):  # noqa: F811
    facts, der = _login(login_ca, store, "郑十")
    _, s = open_session(store, facts, der, source=SOURCE)
    _, other = open_session(store, facts, der, source=SOURCE)
    check_csrf(s, s.csrf_token)
    for bad in (None, "", other.csrf_token, s.csrf_token[:-1], s.csrf_token + "x", "令牌"):
        with pytest.raises(CSRFRefused):
            check_csrf(s, bad)
