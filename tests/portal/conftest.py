"""The portal as a browser meets it: a real ``unica serve`` over TLS on 127.0.0.1, an
enterprise's card on a SoftHSM2 token served by a real ``unica agent``, and Debian's chromium
driven by Playwright (no browser download: the system's ``/usr/bin/chromium``).

``portal`` (module): one :class:`Portal` per test module -- a copy of tests/service's CA with one
more token, the enterprise card (a P-256 key labelled ``login``, its certificate issued by
``root`` under ``enterprise-auth`` through ``unica token enroll`` as alice), the service, and the
agent allowing the service's origin (and tests/login's ``OTHER_PORTAL``). :class:`Portal` has
``service`` (tests/service's :class:`Service`), ``agent``, ``card_serial``, ``request(...)``
(http.client over TLS, from a chosen loopback ``source`` address so a test's failed logins do not
count against another's), ``card_login(...)`` (a real card login over HTTP: challenge, the agent's
signature, POST /login -> the session cookie).

``browser`` (module): one headless chromium per module (``context()`` gives a fresh profile that
trusts the test CA's server certificate by ignoring HTTPS errors -- the certificate is the test
CA's, not a public one).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.login.conftest import OTHER_PORTAL, Agent
from tests.service.conftest import Reply, Service, _service_template, copy_service_ca, start_service  # noqa: F401

USCC = "91350100M000100Y43"
ORG = "示例科技有限公司"
PERSON = "张三"
COOKIE = "__Host-unica-session"
CHROMIUM = "/usr/bin/chromium"
#: screenshots the tests write for the docs
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@dataclass
class CardHolder:
    """What tests/login's Agent needs of a CA: its directory, environment and the card's key URI."""

    dir: Path
    env: dict
    card_uri: str


def cookie_of(reply: Reply, name: str = COOKIE) -> str | None:
    """The value ``reply`` sets for cookie ``name`` (None when it sets none; "" when it clears it)."""
    for k, v in reply.raw_headers:
        if k.lower() == "set-cookie" and v.startswith(name + "="):
            return v.split(";", 1)[0].split("=", 1)[1].strip('"')
    return None


@dataclass
class Portal:
    service: Service
    agent: Agent
    card_serial: str
    card_cert: Path
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.service.url

    def request(self, method: str, path: str, body=None, headers: dict | None = None, *, cookie: str | None = None,
                source: str = "127.0.0.1", form: dict | None = None, cert=None) -> Reply:
        h = dict(headers or {})
        if form is not None:
            body = urlencode(form).encode()
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if cookie is not None:
            h["Cookie"] = f"{COOKIE}={cookie}"
        conn = http.client.HTTPSConnection(self.service.host, self.service.port,
                                           context=self.service.ssl_context(cert), timeout=30,
                                           source_address=(source, 0))
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            raw = r.getheaders()
            reply = Reply(r.status, {k.lower(): v for k, v in raw}, r.read())
            reply.raw_headers = raw
            return reply
        finally:
            conn.close()

    def challenge(self, source: str = "127.0.0.1") -> str:
        r = self.request("GET", "/login/challenge", source=source)
        assert r.status == 200, r.body
        return r.json["challenge"]

    def sign(self, text: str, origin: str | None = None) -> dict:
        r = self.agent.sign(text, origin or self.url)
        assert r.status == 200, r.body
        return r.json

    def post_login(self, text: str, signed: dict, *, source: str = "127.0.0.1", next_path: str | None = None,
                   cookie: str | None = None, headers: dict | None = None) -> Reply:
        form = {"challenge": text, "signature": signed["signature"], "certificate": signed["certificate"]}
        if next_path is not None:
            form["next"] = next_path
        return self.request("POST", "/login", form=form, source=source, cookie=cookie, headers=headers)

    def card_login(self, *, source: str = "127.0.0.1", next_path: str | None = None) -> str:
        """A real card login over HTTP; the session cookie's value."""
        text = self.challenge(source)
        r = self.post_login(text, self.sign(text), source=source, next_path=next_path)
        assert r.status == 303, (r.status, r.body[:2000])
        token = cookie_of(r)
        assert token, r.headers
        return token

    def csrf_of(self, page: Reply) -> str:
        m = re.search(rb'name="csrf_token" value="([^"]+)"', page.body)
        assert m, page.body[:2000]
        return m.group(1).decode()


def _enroll_card(j) -> tuple[str, str, Path]:
    """An enterprise card in ``j``'s token directory: (key URI, certificate serial, certificate PEM)."""
    label = f"{j.tag}-ent-{uuid.uuid4().hex[:4]}"
    j.init_token(label)
    if not j.extra_profiles:  # office customs (bob's) issues enterprise-auth cards too (alice, its admin, says so)
        j.ok("office", "set", "customs", "--profile", "enterprise-sign", "--profile", "enterprise-auth", who="alice")
        j.extra_profiles = True
    j.ok("token", "enroll", "--token", label, "--label", "login", "--key-type", "ec-p256",
         "--subject", f"C=CN,O={ORG},CN={PERSON}", "--uscc", USCC, "--ca", "root", "--profile", "enterprise-auth",
         who="bob")
    serial = j.sql("SELECT serial FROM certificates WHERE profile='enterprise-auth' ORDER BY id DESC LIMIT 1")[0][0]
    pem = j.dir / f"{label}.pem"
    j.ok("cert", "export", serial, "--ca", "root", "--out", str(pem))
    return f"pkcs11:token={label};object=login", serial, pem


@pytest.fixture(scope="module")
def portal(tmp_path_factory, _service_template):  # noqa: F811
    j = copy_service_ca(_service_template, tmp_path_factory.mktemp("portal"))
    j.extra_profiles = False
    uri, serial, pem = _enroll_card(j)
    svc = start_service(j)
    try:
        agent = Agent(CardHolder(j.dir, j.env, uri), "--allow-origin", svc.url)
    except BaseException:
        svc.stop()
        raise
    p = Portal(svc, agent, serial, pem)
    yield p
    agent.stop()
    svc.stop()


class Browser:
    def __init__(self):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

    def context(self, **kw):
        kw.setdefault("ignore_https_errors", True)
        kw.setdefault("locale", "zh-CN")
        kw.setdefault("viewport", {"width": 1100, "height": 800})
        return self.browser.new_context(**kw)

    def close(self):
        self.browser.close()
        self._pw.stop()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium fonts-noto-cjk")
    b = Browser()
    yield b
    b.close()
