"""The portal's login, logout and home pages under attack, over real HTTP (issue #14's hostile
suite, the portal's part): CSRF on logout, login CSRF from another origin, session fixation, open
redirects through ``next``, a replayed challenge, a challenge for another origin, failed logins
limited per source; the security headers of every page; the TLS client certificate login; the
language switch. A real ``unica serve`` over TLS and a real ``unica agent`` on a SoftHSM2 card
(tests/portal/conftest.py); each test that fails logins on purpose does so from its own loopback
address (127.0.0.N), so the per-source limit of one test does not meet another's.
"""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

import pytest

from tests.login.conftest import OTHER_PORTAL
from tests.portal.conftest import COOKIE, cookie_of, portal  # noqa: F401 (fixture)
from unica.portal import i18n
from unica.portal.challenge import make_challenge
from unica.portal.ratelimit import FailureLimiter

EVIL = "https://evil.example"


def _headers_ok(r) -> None:
    csp = r.headers["content-security-policy"]
    for part in ("default-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'",
                 "script-src 'self'"):
        assert part in csp, csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] in ("same-origin", "no-referrer")
    assert r.headers["cache-control"] == "no-store"


def test_every_page_carries_the_security_headers(portal):  # noqa: F811
    login = portal.request("GET", "/login")
    assert login.status == 200
    _headers_ok(login)
    # only the login page's script may reach the agent on the loopback
    assert "connect-src 'self' http://127.0.0.1:* http://localhost:*" in login.headers["content-security-policy"]
    token = portal.card_login(source="127.0.0.2")
    home = portal.request("GET", "/", cookie=token)
    assert home.status == 200
    _headers_ok(home)
    assert "connect-src 'self';" in home.headers["content-security-policy"]
    err = portal.request("POST", "/logout", form={}, cookie=token)
    assert err.status == 403
    _headers_ok(err)
    no = portal.request("GET", "/", cookie="x" * 43)
    assert no.status == 303
    _headers_ok(no)


def test_logout_without_this_sessions_csrf_token_is_refused(portal):  # noqa: F811
    token = portal.card_login(source="127.0.0.3")
    page = portal.request("GET", "/", cookie=token)
    csrf = portal.csrf_of(page)
    for form, headers in (({}, {}), ({"csrf_token": "0" * 43}, {}), ({"csrf_token": csrf[:-1]}, {}),
                          ({"csrf_token": csrf}, {"Origin": EVIL})):
        r = portal.request("POST", "/logout", form=form, cookie=token, headers=headers)
        assert r.status == 403, (form, headers, r.status)
        assert cookie_of(r) is None
        assert portal.request("GET", "/", cookie=token).status == 200  # still logged in
    # a GET does not log out (state changes only by POST)
    assert portal.request("GET", "/logout", cookie=token).status in (404, 405)
    r = portal.request("POST", "/logout", form={"csrf_token": csrf}, cookie=token, headers={"Origin": portal.url})
    assert r.status == 303 and r.headers["location"] == "/login?ended=logout"
    assert cookie_of(r) == ""  # cleared
    assert portal.request("GET", "/", cookie=token).status == 303
    # the CSRF token of one session is not another's
    other = portal.card_login(source="127.0.0.3")
    assert portal.request("POST", "/logout", form={"csrf_token": csrf}, cookie=other).status == 403


def test_a_login_posted_from_another_origin_is_refused(portal):  # noqa: F811
    text = portal.challenge("127.0.0.4")
    r = portal.post_login(text, portal.sign(text), source="127.0.0.4", headers={"Origin": EVIL})
    assert r.status == 403 and cookie_of(r) is None
    # the challenge is still good: the refusal came first
    r = portal.post_login(text, portal.sign(text), source="127.0.0.4", headers={"Origin": portal.url})
    assert r.status == 303 and cookie_of(r)


def test_a_planted_session_cookie_is_never_the_session(portal):  # noqa: F811
    planted = "A" * 43
    r = portal.request("GET", "/", cookie=planted)
    assert r.status == 303 and r.headers["location"].startswith("/login?next=%2F")
    assert cookie_of(r) == ""  # the unknown cookie is cleared
    text = portal.challenge("127.0.0.5")
    r = portal.post_login(text, portal.sign(text), source="127.0.0.5", cookie=planted)
    assert r.status == 303
    fresh = cookie_of(r)
    assert fresh and fresh != planted and len(fresh) == 43
    assert portal.request("GET", "/", cookie=planted).status == 303
    assert portal.request("GET", "/", cookie=fresh).status == 200
    # each login a new token, even from the same browser with a live session
    again = portal.request("POST", "/login", form={}, source="127.0.0.5", cookie=fresh)
    assert again.status == 400
    assert cookie_of(portal.request("GET", "/", cookie=fresh)) is None
    second = portal.card_login(source="127.0.0.5")
    assert second != fresh


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "\\\\evil.example",
                                    "javascript:alert(1)", "https:evil.example", "/%0d%0aSet-Cookie:x=1",
                                    "/\t/evil.example", " //evil.example"])
def test_next_never_leaves_the_portal(portal, target):  # noqa: F811
    text = portal.challenge("127.0.0.6")
    r = portal.post_login(text, portal.sign(text), source="127.0.0.6", next_path=target)
    assert r.status == 303
    location = r.headers["location"]
    assert location in ("/", target) and location.startswith("/"), location
    assert not location.startswith(("//", "/\\")) and "://" not in location and "\t" not in location, location
    page = portal.request("GET", "/login?next=" + quote(target, safe=""), source="127.0.0.6")
    m = re.search(rb'name="next" value="([^"]*)"', page.body)
    assert m and m.group(1) in (b"/", target.encode()) and not m.group(1).startswith(b"//"), m


def test_next_on_the_portal_is_kept(portal):  # noqa: F811
    target = "/oidc/authorize?client_id=abc&state=x%20y"
    text = portal.challenge("127.0.0.6")
    r = portal.post_login(text, portal.sign(text), source="127.0.0.6", next_path=target)
    assert r.status == 303 and r.headers["location"] == target
    # a page that needs a session sends the browser to the login with next set
    r = portal.request("GET", "/?lang=en", source="127.0.0.6")
    assert r.status == 303 and r.headers["location"] == "/login?next=" + quote("/?lang=en", safe="")


def test_a_replayed_challenge_is_refused(portal):  # noqa: F811
    text = portal.challenge("127.0.0.7")
    signed = portal.sign(text)
    first = portal.post_login(text, signed, source="127.0.0.7")
    assert first.status == 303 and cookie_of(first)
    again = portal.post_login(text, signed, source="127.0.0.7")
    assert again.status == 403 and cookie_of(again) is None
    assert i18n.text("login.refused.replayed").encode() in again.body
    assert b'role="alert"' in again.body


def test_a_challenge_for_another_origin_is_refused(portal):  # noqa: F811
    # the agent signs a challenge for another portal it serves, asked by that portal's page ...
    other, _ = make_challenge(OTHER_PORTAL, dt.datetime.now(dt.timezone.utc), 60)
    signed = portal.sign(other, OTHER_PORTAL)
    # ... which is no login here
    r = portal.post_login(other, signed, source="127.0.0.8")
    assert r.status == 403 and cookie_of(r) is None
    assert i18n.text("login.refused.wrong-origin").encode() in r.body
    # and the agent refuses to sign this portal's challenge for another origin's page
    text = portal.challenge("127.0.0.8")
    assert portal.agent.sign(text, OTHER_PORTAL).status == 403
    assert portal.agent.sign(text, EVIL).status == 403


def test_a_challenge_the_portal_never_issued_is_refused(portal):  # noqa: F811
    forged, _ = make_challenge(portal.url, dt.datetime.now(dt.timezone.utc), 60)
    r = portal.post_login(forged, portal.sign(forged), source="127.0.0.9")
    assert r.status == 403 and i18n.text("login.refused.unknown-challenge").encode() in r.body


def test_failed_logins_are_limited_per_source(portal):  # noqa: F811
    source = "127.0.0.77"
    text = portal.challenge(source)
    signed = portal.sign(text)
    bad = dict(signed, signature=signed["signature"][:-8] + "AAAAAAA=")
    for _ in range(5):
        r = portal.post_login(text, bad, source=source)
        assert r.status == 403, r.status
    r = portal.post_login(text, signed, source=source)  # even a good login waits now
    assert r.status == 429 and int(r.headers["retry-after"]) >= 1 and cookie_of(r) is None
    assert b'role="alert"' in r.body
    # another source is not held back
    r = portal.post_login(text, signed, source="127.0.0.78")
    assert r.status == 303 and cookie_of(r)


def test_failure_limiter_window():
    lim = FailureLimiter(3, 60)
    for t in (0, 1, 2):
        assert lim.retry_after("a", t) == 0
        lim.failed("a", t)
    assert lim.retry_after("a", 3) == 57 and lim.retry_after("b", 3) == 0
    assert lim.retry_after("a", 60.5) == 0  # the first failure left the window


def test_malformed_logins_are_answered_inline(portal):  # noqa: F811
    source = "127.0.0.10"
    for form in ({}, {"challenge": "x", "signature": "!!", "certificate": "AA=="},
                 {"challenge": "unica-login-v1\n", "signature": "AAAA", "certificate": "AAAA"}):
        r = portal.request("POST", "/login", form=form, source=source)
        assert r.status == 400, (form, r.status)
        assert b'role="alert"' in r.body and b"<h1>" in r.body
    r = portal.request("POST", "/login", body=b"{not json", headers={"Content-Type": "application/json"},
                       source=source)
    assert r.status == 400


def test_a_json_login_works_as_a_form_does(portal):  # noqa: F811
    text = portal.challenge("127.0.0.11")
    signed = portal.sign(text)
    r = portal.request("POST", "/login", {"challenge": text, "signature": signed["signature"],
                                          "certificate": signed["certificate"], "next": "/?lang=en"},
                       source="127.0.0.11")
    assert r.status == 303 and r.headers["location"] == "/?lang=en" and cookie_of(r)


def test_tls_client_certificate_login(portal):  # noqa: F811
    r = portal.request("POST", "/login/tls", form={"next": "/"}, source="127.0.0.12")
    assert r.status == 400 and i18n.text("login.error.no-tls-cert").encode() in r.body
    cert = portal.service.client_cert("Tess Auditor")
    portal.service.add_operator("tess", cert, "--role", "auditor")
    r = portal.request("POST", "/login/tls", form={"next": "/"}, source="127.0.0.12", cert=cert)
    assert r.status == 303, r.body[:2000]
    token = cookie_of(r)
    home = portal.request("GET", "/?lang=en", cookie=token)
    assert home.status == 200
    body = home.body.decode()
    assert "TLS client certificate" in body and "Tess Auditor" in body and "Auditor" in body
    # an expired or revoked client certificate logs nobody in
    portal.service.ok("cert", "revoke", cert.serial, "--ca", "root", who="alice")
    r = portal.request("POST", "/login/tls", form={}, source="127.0.0.12", cert=cert)
    assert r.status == 403 and cookie_of(r) is None
    assert i18n.text("login.refused.certificate-refused").encode() in r.body
    assert portal.request("GET", "/", cookie=token).status == 303  # and its session ended


def test_language_switch_and_html_lang(portal):  # noqa: F811
    zh = portal.request("GET", "/login")
    assert b'<html lang="zh-CN">' in zh.body and i18n.text("login.title", "zh").encode() in zh.body
    en = portal.request("GET", "/login?lang=en")
    assert b'<html lang="en">' in en.body and i18n.text("login.title", "en").encode() in en.body
    assert "unica-lang=en" in en.headers.get("set-cookie", "")
    kept = portal.request("GET", "/login", headers={"Cookie": "unica-lang=en"})
    assert b'<html lang="en">' in kept.body
    odd = portal.request("GET", "/login?lang=xx")
    assert b'<html lang="zh-CN">' in odd.body


def test_static_files_and_nothing_else(portal):  # noqa: F811
    js = portal.request("GET", "/static/login.js")
    assert js.status == 200 and js.headers["content-type"].startswith("text/javascript")
    assert js.headers["x-content-type-options"] == "nosniff"
    for name in ("../pages.py", "..%2Fportal.py", "nope.css"):
        assert portal.request("GET", "/static/" + name).status == 404


def test_the_catalogue_has_both_languages_for_every_key_the_templates_use():
    from unica.service.pages import TEMPLATES

    for key, entry in i18n.CATALOGUE.items():
        assert set(entry) == set(i18n.LANGUAGES) and all(entry.values()), key
    used = set()
    for path in TEMPLATES.rglob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_.-]+)["']\s*[,)]""", path.read_text()))
    assert used and not [k for k in used if not i18n.has(k)]
