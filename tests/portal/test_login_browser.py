"""Card login in a real browser (issue #14's Done-when): Debian's chromium, headless, through
Playwright, on the portal of a real ``unica serve`` over TLS, the card a SoftHSM2 token served by a
real ``unica agent`` on 127.0.0.1. The page's script fetches a challenge, the agent signs it with
the card, the form posts it; the session cookie is the __Host- one. Then: logout, a page of
another origin asking the agent (refused: no CORS answer, nothing signed), and a revoked card
refused at the very next request and at a fresh login. Screenshots go to docs/img/portal-*.png.

The tests of this module run in order (one service, one browser): the revocation is last.
"""

from __future__ import annotations

import http.server
import re
import threading

import pytest

from tests.portal.conftest import COOKIE, IMG, ORG, PERSON, USCC, browser, portal  # noqa: F401 (fixtures)

_shared: dict = {}


def _login(portal, page, next_path: str = "/") -> None:  # noqa: F811
    page.goto(f"{portal.url}/login?agent={portal.agent.port}&next={next_path}")
    page.get_by_role("button", name="用证书卡登录").click()
    page.wait_for_url(f"{portal.url}{next_path}", timeout=30_000)


def test_card_login_in_the_browser_through_the_agent(portal, browser):  # noqa: F811
    # an agency system registered with the provider: the home page offers to enter it
    portal.service.ok("sso", "client", "add", "customs-declaration", "--redirect-uri",
                      "https://customs.example.cn/oidc/callback", who="alice")
    ctx = browser.context()
    page = ctx.new_page()
    page.goto(f"{portal.url}/login?agent={portal.agent.port}")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_role("heading", level=1).inner_text() == "使用证书卡登录"
    # the agent port field is labelled (keyboard and screen-reader users reach it by its label)
    assert page.get_by_label("签名助手端口").input_value() == str(portal.agent.port)
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / "portal-login.png"), full_page=True)

    page.get_by_label("签名助手端口").focus()
    page.keyboard.press("Tab")  # the login button, by keyboard
    page.keyboard.press("Enter")
    page.wait_for_url(f"{portal.url}/", timeout=30_000)
    assert page.get_by_role("heading", level=1).inner_text() == "我的门户"
    body = page.locator("main").inner_text()
    assert page.get_by_role("link", name="进入 customs-declaration").get_attribute("href") == \
        "https://customs.example.cn/"
    for shown in (PERSON, ORG, USCC, portal.card_serial, "证书卡（签名助手）"):
        assert shown in body, body
    cookies = {c["name"]: c for c in ctx.cookies()}
    c = cookies[COOKIE]
    assert c["secure"] and c["httpOnly"] and c["sameSite"] == "Lax" and c["path"] == "/", c
    assert page.evaluate("document.cookie").find(COOKIE) < 0  # HttpOnly: no script reads it
    page.screenshot(path=str(IMG / "portal-home.png"), full_page=True)
    page.goto(f"{portal.url}/?lang=en")
    assert page.get_by_role("heading", level=1).inner_text() == "My portal"
    assert page.locator("html").get_attribute("lang") == "en"
    page.screenshot(path=str(IMG / "portal-home-en.png"), full_page=True)
    page.goto(f"{portal.url}/?lang=zh")
    # the agent signed once, for this portal's origin, and logged no PIN
    assert re.search(rf"signed a login challenge for {re.escape(portal.url)}", portal.agent.stderr)
    _shared["ctx"] = ctx


def test_logout_ends_the_session(portal, browser):  # noqa: F811
    ctx = _shared.pop("ctx", None) or browser.context()
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    if not page.url.startswith(portal.url + "/") or "/login" in page.url:
        _login(portal, page)
    token = {c["name"]: c["value"] for c in ctx.cookies()}[COOKIE]
    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url(re.compile(r".*/login\?ended=logout$"))
    assert "您已退出登录" in page.locator("main").inner_text()
    assert COOKIE not in {c["name"] for c in ctx.cookies()}
    # the old token opens nothing any more, in this browser or any other client
    assert portal.request("GET", "/", cookie=token).status == 303
    page.goto(f"{portal.url}/")
    assert page.url.startswith(f"{portal.url}/login?next=")
    ctx.close()


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"<!doctype html><title>elsewhere</title><p>another site</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_agent_refuses_a_page_of_another_origin(portal, browser):  # noqa: F811
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ctx = browser.context()
        page = ctx.new_page()
        foreign = f"http://127.0.0.1:{server.server_address[1]}"
        page.goto(foreign + "/")
        text = portal.challenge()  # a real challenge for the portal, that the other page wants signed
        before = portal.agent.stderr.count("signed a login challenge")
        outcome = page.evaluate("""async ([agent, text]) => {
            try {
                const r = await fetch(agent, {method: "POST", headers: {"Content-Type": "application/json"},
                                              body: JSON.stringify({challenge: text})});
                return "answered " + r.status + " " + await r.text();
            } catch (e) { return "refused " + e.name; }
        }""", [f"http://127.0.0.1:{portal.agent.port}/v1/sign", text])
        assert outcome == "refused TypeError", outcome  # no CORS answer: the page reads nothing
        assert portal.agent.stderr.count("signed a login challenge") == before
        assert f"origin {foreign!r}" in portal.agent.stderr and "origin-not-allowed" in portal.agent.stderr
        ctx.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_revoked_card_is_refused_at_the_next_request(portal, browser):  # noqa: F811
    ctx = browser.context()
    page = ctx.new_page()
    _login(portal, page)
    assert page.get_by_role("heading", level=1).inner_text() == "我的门户"
    portal.service.ok("cert", "revoke", portal.card_serial, "--ca", "root", "--reason", "keyCompromise", who="bob")
    page.reload()
    assert re.search(r"/login\?next=%2F&ended=certificate-refused$", page.url), page.url
    assert "您的证书已不再有效" in page.locator("main").inner_text()
    assert COOKIE not in {c["name"] for c in ctx.cookies()}
    # the page remembers the agent's port from the last login
    assert page.get_by_label("签名助手端口").input_value() == str(portal.agent.port)
    # a fresh login with the revoked card: the agent still signs, the portal refuses, inline
    page.get_by_role("button", name="用证书卡登录").click()
    alert = page.get_by_role("alert")
    alert.wait_for(timeout=30_000)
    assert "证书被拒绝" in alert.inner_text()
    assert page.url.endswith("/login")
    assert COOKIE not in {c["name"] for c in ctx.cookies()}
    ctx.close()
