"""examples/agency_system.py -- an agency system built on Authlib's client and joserfc -- run as
two processes on 127.0.0.1 against the real ``unica serve`` over TLS (issue #14): the first
agency system's sign-in goes through the card login, the second, started after it, signs the
user in with no second login; the example refuses a mismatching state and an ID token made for
another client; after logout, sign-in needs the card again."""

from __future__ import annotations

import html
import http.client
import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.service.conftest import free_port
from tests.sso.oidc_env import start_env

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agency_system.py"


class Agency:
    """One example agency system process; ``get(path, cookie)`` -> (status, headers, body)."""

    def __init__(self, env, name: str, port: int):
        c = env.clients[name]
        e = dict(os.environ)
        e.pop("AGENCY_CLIENT_SECRET", None)
        if c.get("client_secret"):
            e["AGENCY_CLIENT_SECRET"] = c["client_secret"]
        self.port = port
        self.client_id = c["client_id"]
        self.proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--issuer", env.url,
                                      f"--client-id={c['client_id']}", "--ca-file", str(env.svc.ca_pem), "--port", str(port)],
                                     env=e, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first: list = []
        t = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(60)
        if not first or not first[0].startswith(b"agency system on http://127.0.0.1:"):
            self.stop()
            raise AssertionError(f"the example did not start: {first} {self.proc.stderr.read().decode()}")

    def get(self, path: str, cookie: str | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, _sso_template):
    pa, pb = free_port(), free_port()
    env = start_env(tmp_path_factory.mktemp("oidc-example"), _sso_template, extra_clients={
        "customs-app": (f"http://127.0.0.1:{pa}/callback", False),
        "tax-app": (f"http://127.0.0.1:{pb}/callback", True)})
    started: list = []
    yield env, pa, pb, started
    for a in started:
        a.stop()
    env.close()


def _agency(setup, name: str) -> Agency:
    """The example agency system ``name`` (started on first use)."""
    env, pa, pb, started = setup
    port = pa if name == "customs-app" else pb
    found = [a for a in started if a.port == port]
    if not found:
        found.append(Agency(env, name, port))
        started.append(found[0])
    return found[0]


def _begin(agency: Agency) -> tuple[str, str]:
    """The agency system's /login: (its cookie, the path of unica's authorize URL it sent to)."""
    status, headers, _ = agency.get("/login")
    assert status == 302
    cookie = headers["set-cookie"].split(";")[0]
    return cookie, headers["location"]


def _authorize(env, location: str, session: str | None):
    assert location.startswith(env.url + "/oidc/authorize?")
    q = parse_qs(urlsplit(location).query)
    assert set(q) == {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
                      "code_challenge_method"}, q
    assert q["code_challenge_method"] == ["S256"] and q["scope"] == ["openid"]
    return env.get(location[len(env.url):], session)


def _claims(body: str) -> dict:
    return json.loads(html.unescape(body.split("<pre id='claims'>")[1].split("</pre>")[0]))


def _sign_in(env, agency: Agency, session: str) -> dict:
    cookie, location = _begin(agency)
    r = _authorize(env, location, session)
    assert r.status == 303, r.body[:300]
    cb = r.headers["location"]
    assert cb.startswith(f"http://127.0.0.1:{agency.port}/callback?code=")
    status, _, body = agency.get(cb[len(f"http://127.0.0.1:{agency.port}"):], cookie)
    assert status == 200, body
    return _claims(body)


def test_two_agency_systems_one_card_login(setup):
    env, pa, pb, started = setup
    assert not started  # nothing signed in before this test
    customs = _agency(setup, "customs-app")
    # no portal session yet: unica sends the browser to the card login, then back to authorize
    cookie, location = _begin(customs)
    r = _authorize(env, location, None)
    assert r.status == 303 and r.headers["location"].startswith("/login?next=")
    next_path = parse_qs(urlsplit(r.headers["location"]).query)["next"][0]
    r = env.login_reply(env.holder("张三"), next_path)  # the card login, back to where it was going
    assert r.status == 303 and r.headers["location"] == next_path
    session = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    r = env.get(next_path, session)
    assert r.status == 303
    status, _, body = customs.get(r.headers["location"][len(f"http://127.0.0.1:{pa}"):], cookie)
    assert status == 200, body
    first = _claims(body)
    assert first["name"] == "张三" and first["aud"] == customs.client_id and first["acr"] == "urn:unica:acr:card"
    # the second agency system, started after the first login: no second login
    tax = _agency(setup, "tax-app")
    second = _sign_in(env, tax, session)
    assert second["sub"] == first["sub"] and second["auth_time"] == first["auth_time"]
    assert second["aud"] == tax.client_id
    n_sessions = env.svc.joint.sql("SELECT count(*) FROM portal_sessions")[0][0]
    assert _sign_in(env, customs, session)["sub"] == first["sub"]
    assert env.svc.joint.sql("SELECT count(*) FROM portal_sessions")[0][0] == n_sessions


def test_the_example_refuses_a_mismatching_state(setup):
    env, pa, pb, started = setup
    customs = _agency(setup, "customs-app")
    session = env.login(env.holder("李四"))
    cookie, location = _begin(customs)
    r = _authorize(env, location, session)
    cb = r.headers["location"][len(f"http://127.0.0.1:{pa}"):]
    q = parse_qs(urlsplit(cb).query)
    status, _, body = customs.get(f"/callback?code={q['code'][0]}&state=forged", cookie)
    assert status == 400 and "MismatchingState" in body
    # a callback without a sign-in begun in this browser is refused too
    status, _, body = customs.get(cb, "sid=unknown")
    assert status == 400 and "no sign-in in progress" in body


def test_the_example_refuses_an_id_token_made_for_another_client(setup):
    env, pa, pb, started = setup
    spec = importlib.util.spec_from_file_location("agency_system", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    conf = example.discover(env.url, str(env.svc.ca_pem))
    session = env.login(env.holder("王五"))
    code, verifier, q = env.code(session, "customs")
    id_token = env.token(code, verifier).json["id_token"]
    assert example.verify_id_token(id_token, conf, env.clients["customs"]["client_id"], q["nonce"],
                                   str(env.svc.ca_pem))["aud"] == env.clients["customs"]["client_id"]
    from joserfc.errors import InvalidClaimError

    with pytest.raises(InvalidClaimError, match="aud"):
        example.verify_id_token(id_token, conf, env.clients["tax-app"]["client_id"], q["nonce"], str(env.svc.ca_pem))
    with pytest.raises(InvalidClaimError, match="nonce"):
        example.verify_id_token(id_token, conf, env.clients["customs"]["client_id"], "another-nonce",
                                str(env.svc.ca_pem))


def test_after_logout_the_agency_system_needs_the_card_again(setup):
    env, pa, pb, started = setup
    tax = _agency(setup, "tax-app")
    session = env.login(env.holder("赵六"))
    assert _sign_in(env, tax, session)["name"] == "赵六"
    page = env.get("/oidc/logout", session)
    csrf = page.body.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    assert env.post_form("/oidc/logout", {"csrf_token": csrf}, cookie=session).status == 200
    cookie, location = _begin(tax)
    r = _authorize(env, location, session)
    assert r.status == 303 and r.headers["location"].startswith("/login?next=")
