"""Single sign-on in a real browser (issue #14's Done-when): Debian's chromium through Playwright,
two example agency systems (examples/agency_system.py: Authlib's client + joserfc) registered with
the real ``unica serve``, the card a SoftHSM2 token served by a real ``unica agent``.

The first agency system sends the browser to unica, which asks for the card once; the second,
opened after that, signs the same person in with no second card prompt (the agent signs nothing
more). Logout at the provider makes the next sign-in ask for the card again; a revoked card makes
the next authorization fail (the session ends, and a fresh card login is refused).

The tests of this module run in order (one service, one browser): the revocation is last.
"""

from __future__ import annotations

import json
import re
import subprocess
from types import SimpleNamespace

import pytest

from tests.portal.conftest import IMG, PERSON, USCC, browser, portal  # noqa: F401 (fixtures)
from tests.service.conftest import free_port
from tests.sso.test_example import Agency

_shared: dict = {}


def _signatures(portal) -> int:  # noqa: F811
    return len(re.findall(r"signed a login challenge for", portal.agent.stderr))


@pytest.fixture(scope="module")
def agencies(portal):  # noqa: F811
    """Two example agency systems: customs (confidential client) and tax (public client)."""
    svc = portal.service
    j = svc.joint
    label = f"{j.tag}-idt"
    j.init_token(label)
    key = f"pkcs11:token={label};object=idtoken"
    j.ok("key", "generate", key, "--key-type", "ec-p256")
    svc.ok("sso", "key", "add", "--key", key, who="alice")
    started, clients = [], {}
    try:
        for name, public in (("customs-web", False), ("tax-web", True)):
            port = free_port()
            args = ["sso", "client", "add", name, "--redirect-uri", f"http://127.0.0.1:{port}/callback", "--json"]
            clients[name] = json.loads(svc.ok(*args, *(["--public"] if public else []), who="alice").stdout)
            env = SimpleNamespace(clients=clients, url=portal.url, svc=svc)
            started.append(Agency(env, name, port))
        yield {a.client_id: a for a in started} | {"customs": started[0], "tax": started[1]}
    finally:
        for a in started:
            a.stop()


def _claims(page) -> dict:
    return json.loads(page.locator("#claims").inner_text())


def test_sso_into_two_agency_systems_with_one_card_login(portal, browser, agencies):  # noqa: F811
    customs, tax = agencies["customs"], agencies["tax"]
    ctx = browser.context()
    page = ctx.new_page()
    before = _signatures(portal)
    # the first agency system: unica asks for the card (its login page, the agent's port typed in)
    page.goto(f"http://127.0.0.1:{customs.port}/login")
    page.wait_for_url(re.compile(re.escape(portal.url) + r"/login\?next=%2Foidc%2Fauthorize"), timeout=30_000)
    page.get_by_label("签名助手端口").fill(str(portal.agent.port))
    page.get_by_role("button", name="用证书卡登录").click()
    page.wait_for_url(re.compile(rf"http://127\.0\.0\.1:{customs.port}/callback\?"), timeout=30_000)
    first = _claims(page)
    assert first["aud"] == customs.client_id and first["acr"] == "urn:unica:acr:card"
    assert first["name"] == PERSON and USCC in json.dumps(first, ensure_ascii=False)
    assert _signatures(portal) == before + 1
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / "sso-agency-customs.png"), full_page=True)
    # the second agency system, opened after the first login: no card prompt, nothing signed
    page.goto(f"http://127.0.0.1:{tax.port}/login")
    page.wait_for_url(re.compile(rf"http://127\.0\.0\.1:{tax.port}/callback\?"), timeout=30_000)
    second = _claims(page)
    assert second["aud"] == tax.client_id
    assert second["sub"] == first["sub"] and second["auth_time"] == first["auth_time"]
    assert _signatures(portal) == before + 1
    page.screenshot(path=str(IMG / "sso-agency-tax.png"), full_page=True)
    _shared["ctx"] = ctx


def test_logout_at_the_provider_asks_for_the_card_again(portal, browser, agencies):  # noqa: F811
    ctx = _shared["ctx"]
    page = ctx.pages[0]
    page.goto(f"{portal.url}/oidc/logout")
    page.screenshot(path=str(IMG / "sso-logout.png"), full_page=True)
    page.locator("main form[action='/oidc/logout'] button[type=submit]").click()
    page.locator("#logout-message[role=status]").wait_for(timeout=30_000)
    assert "__Host-unica-session" not in {c["name"] for c in ctx.cookies()}
    before = _signatures(portal)
    page.goto(f"http://127.0.0.1:{agencies['tax'].port}/login")
    page.wait_for_url(re.compile(re.escape(portal.url) + r"/login\?next="), timeout=30_000)
    assert _signatures(portal) == before  # the login page waits for the holder; nothing was signed


def test_a_revoked_card_makes_the_next_authorization_fail(portal, browser, agencies):  # noqa: F811
    ctx = _shared.pop("ctx")
    page = ctx.pages[0]
    customs = agencies["customs"]
    page.goto(f"http://127.0.0.1:{customs.port}/login")
    page.wait_for_url(re.compile(re.escape(portal.url) + r"/login\?next="), timeout=30_000)
    page.get_by_label("签名助手端口").fill(str(portal.agent.port))
    page.get_by_role("button", name="用证书卡登录").click()
    page.wait_for_url(re.compile(rf"http://127\.0\.0\.1:{customs.port}/callback\?"), timeout=30_000)
    serial = portal.card_serial
    portal.service.ok("cert", "revoke", serial, "--ca", "root", "--reason", "keyCompromise", who="bob")
    # the next authorization: the session ends at the card check, back to the card login
    page.goto(f"http://127.0.0.1:{agencies['tax'].port}/login")
    page.wait_for_url(re.compile(re.escape(portal.url) + r"/login\?"), timeout=30_000)
    assert "/callback" not in page.url
    # and a fresh card login with the revoked card is refused on the page, inline
    page.get_by_label("签名助手端口").fill(str(portal.agent.port))
    page.get_by_role("button", name="用证书卡登录").click()
    alert = page.get_by_role("alert")
    alert.wait_for(timeout=30_000)
    assert "证书被拒绝" in alert.inner_text()
    assert page.url.startswith(portal.url + "/login"), page.url
    assert "__Host-unica-session" not in {c["name"] for c in ctx.cookies()}
    ctx.close()
