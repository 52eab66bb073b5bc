"""``unica agent`` as a subprocess serving a real SoftHSM2 card: the whole flow (the portal's
challenge, the card's signature through the agent, the portal's check), openssl as an independent
verifier of the card's signature, and the agent's refusals -- it answers only its allowed origins
and signs only unica login challenges for the asking origin."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import subprocess
import sys

import pytest
from cryptography import x509

from tests.conftest import TEST_PIN, assert_one_line_error
from tests.login.conftest import FOREIGN, ORG, OTHER_PORTAL, PORTAL, USCC, Agent
from unica.errors import LoginRefused
from unica.portal.challenge import make_challenge, parse_challenge
from unica.portal.login import issue_challenge, verify_login


@pytest.fixture(scope="module")
def store(login_ca):
    return login_ca.store()


def _cors(reply) -> dict:
    return {k: v for k, v in reply.headers.items() if k.startswith("access-control-")}


def test_card_login_through_the_agent(login_ca, agent, store):
    card = agent.request("GET", "/v1/card", headers={"Origin": PORTAL})
    assert card.status == 200, card.body
    assert base64.b64decode(card.json["certificate"]) == login_ca.card_cert
    assert "CN=张三" in card.json["subject"] and card.json["algorithm"] == "ecdsa-sha256"
    assert card.headers["access-control-allow-origin"] == PORTAL and card.headers["vary"] == "Origin"

    text = issue_challenge(store, PORTAL, source="127.0.0.1")
    r = agent.sign(text)
    assert r.status == 200, r.body
    assert r.headers["access-control-allow-origin"] == PORTAL and "Origin" in r.headers["vary"]
    assert r.headers["cache-control"] == "no-store"
    assert r.json["algorithm"] == "ecdsa-sha256"
    cert_der = base64.b64decode(r.json["certificate"])
    assert cert_der == login_ca.card_cert
    sig = base64.b64decode(r.json["signature"])
    facts = verify_login(store, origin=PORTAL, challenge_text=text, signature=sig, cert_der=cert_der,
                         source="127.0.0.1")
    assert (facts.uscc, facts.enterprise, facts.person, facts.ca) == (USCC, ORG, "张三", "root")
    assert facts.cert_serial == format(x509.load_der_x509_certificate(cert_der).serial_number, "x")
    # the same signed challenge a second time: a replay
    with pytest.raises(LoginRefused) as e:
        verify_login(store, origin=PORTAL, challenge_text=text, signature=sig, cert_der=cert_der, source="127.0.0.1")
    assert e.value.slug == "replayed"
    assert f"signed a login challenge for {PORTAL}, nonce {parse_challenge(text).nonce[:8]}" in agent.stderr


def test_openssl_verifies_the_cards_signature(login_ca, agent, store, tmp_path):
    text = issue_challenge(store, PORTAL, source="127.0.0.1")
    r = agent.sign(text)
    assert r.status == 200, r.body
    (tmp_path / "challenge.txt").write_bytes(text.encode())
    (tmp_path / "sig.der").write_bytes(base64.b64decode(r.json["signature"]))
    (tmp_path / "card.der").write_bytes(base64.b64decode(r.json["certificate"]))
    subprocess.run(["openssl", "x509", "-inform", "DER", "-in", str(tmp_path / "card.der"), "-pubkey", "-noout",
                    "-out", str(tmp_path / "pub.pem")], check=True, capture_output=True)
    ok = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"), "-signature",
                         str(tmp_path / "sig.der"), str(tmp_path / "challenge.txt")], capture_output=True, text=True)
    assert ok.returncode == 0 and "Verified OK" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "challenge.txt").write_bytes(text.encode() + b"\n")
    bad = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"), "-signature",
                          str(tmp_path / "sig.der"), str(tmp_path / "challenge.txt")], capture_output=True, text=True)
    assert bad.returncode != 0 and "Verification failure" in bad.stdout + bad.stderr


def test_second_allowed_origin(agent, store):
    text = issue_challenge(store, OTHER_PORTAL, source="127.0.0.1")
    r = agent.sign(text, origin=OTHER_PORTAL)
    assert r.status == 200 and r.headers["access-control-allow-origin"] == OTHER_PORTAL


@pytest.mark.parametrize("origin", [FOREIGN, None, "null", PORTAL + "/", PORTAL.upper(), "https://127.0.0.1:8444"])
def test_foreign_origin_is_refused_without_cors(agent, store, origin):
    text = issue_challenge(store, PORTAL, source="127.0.0.1")
    headers = {} if origin is None else {"Origin": origin}
    for method, path, body in (("POST", "/v1/sign", {"challenge": text}), ("GET", "/v1/card", None),
                               ("OPTIONS", "/v1/sign", None)):
        h = dict(headers)
        if method == "OPTIONS":
            h.update({"Access-Control-Request-Method": "POST", "Access-Control-Request-Private-Network": "true"})
        r = agent.request(method, path, body, h)
        assert r.status == 403, (method, r.status, r.body)
        assert _cors(r) == {}, r.headers
        assert r.json["error"] == "origin-not-allowed"
        assert "signature" not in r.json and "certificate" not in r.json


def test_preflight_for_an_allowed_origin(agent):
    r = agent.request("OPTIONS", "/v1/sign", headers={"Origin": PORTAL, "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": "content-type",
                                                      "Access-Control-Request-Private-Network": "true"})
    assert r.status == 204 and r.body == b""
    cors = _cors(r)
    assert cors["access-control-allow-origin"] == PORTAL
    assert cors["access-control-allow-private-network"] == "true"
    assert "POST" in cors["access-control-allow-methods"] and "content-type" in cors["access-control-allow-headers"].lower()
    assert r.headers["vary"] == "Origin"


def test_rebinding_host_is_refused(agent, store):
    text = issue_challenge(store, PORTAL, source="127.0.0.1")
    r = agent.request("POST", "/v1/sign", {"challenge": text}, {"Origin": PORTAL, "Host": f"evil.example:{agent.port}"})
    assert r.status == 403 and r.json["error"] == "wrong-host" and _cors(r) == {}
    r = agent.request("GET", "/v1/card", headers={"Origin": PORTAL, "Host": f"localhost:{agent.port}"})
    assert r.status == 200


def test_challenge_for_another_origin_is_not_signed(agent, store):
    # the portal at PORTAL is allowed, but a page of OTHER_PORTAL asks for PORTAL's challenge
    text = issue_challenge(store, PORTAL, source="127.0.0.1")
    r = agent.sign(text, origin=OTHER_PORTAL)
    assert r.status == 403 and r.json["error"] == "wrong-origin" and "signature" not in r.json
    assert r.headers["access-control-allow-origin"] == OTHER_PORTAL  # an allowed page may read why
    # a challenge naming an origin the agent does not serve at all
    text = issue_challenge(store, FOREIGN, source="127.0.0.1")
    r = agent.sign(text)
    assert r.status == 403 and r.json["error"] == "wrong-origin"


@pytest.mark.parametrize("body", [
    {"challenge": "please sign this purchase order"},
    {"challenge": "3f" * 32},
    {"challenge": "unica-login-v1\norigin: https://127.0.0.1:8443"},
    {"challenge": "x", "extra": 1},
    {"text": "x"},
    ["unica-login-v1"],
    {"challenge": 5},
])
def test_agent_is_not_a_signing_oracle(agent, store, body):
    r = agent.request("POST", "/v1/sign", body, {"Origin": PORTAL})
    assert r.status == 400, r.body
    assert r.json["error"] in ("not-a-challenge", "malformed") and "signature" not in r.json


def test_valid_challenge_plus_suffix_is_not_signed(agent, store):
    text = issue_challenge(store, PORTAL, source="127.0.0.1")
    for altered in (text + "\n", text + "\nextra: x", "x" + text, text.replace("\n", "\r\n")):
        r = agent.sign(altered)
        assert r.status == 400 and r.json["error"] == "not-a-challenge", (altered, r.body)


def test_expired_challenge_is_not_signed(agent):
    text, _ = make_challenge(PORTAL, dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5), 60)
    r = agent.sign(text)
    assert r.status == 400 and r.json["error"] == "expired"
    text, _ = make_challenge(PORTAL, dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5), 60)
    r = agent.sign(text)
    assert r.status == 400 and r.json["error"] == "expired"


def test_bodies_are_bounded_and_typed(agent, store):
    text = issue_challenge(store, PORTAL, source="127.0.0.1")
    big = json.dumps({"challenge": text + " " * 5000}).encode()
    r = agent.request("POST", "/v1/sign", big, {"Origin": PORTAL, "Content-Type": "application/json"})
    assert r.status == 413 and r.json["error"] == "body-too-large"
    # a body larger than it says, sent in chunks without a length
    conn = __import__("http.client").client.HTTPConnection("127.0.0.1", agent.port, timeout=30)
    conn.putrequest("POST", "/v1/sign")
    conn.putheader("Origin", PORTAL)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for _ in range(10):
        chunk = b"x" * 1000
        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()
    r = agent.request("POST", "/v1/sign", json.dumps({"challenge": text}).encode(),
                      {"Origin": PORTAL, "Content-Type": "text/plain"})
    assert r.status == 415
    r = agent.request("POST", "/v1/sign", b"{not json", {"Origin": PORTAL, "Content-Type": "application/json"})
    assert r.status == 400 and r.json["error"] == "malformed"
    r = agent.request("GET", "/v1/sign", headers={"Origin": PORTAL})
    assert r.status == 405
    r = agent.request("GET", "/v1/other", headers={"Origin": PORTAL})
    assert r.status == 404
    # after all that the agent still signs
    assert agent.sign(text).status == 200


def test_pin_never_in_output(login_ca, tmp_path):
    pin_file = tmp_path / "pin"
    pin_file.write_text(TEST_PIN + "\n")
    a = Agent(login_ca, "--pin-file", str(pin_file), env={"UNICA_PIN": None})
    try:
        assert a.first_line == f"unica agent on http://127.0.0.1:{a.port}/\n"
        store = login_ca.store()
        text = issue_challenge(store, PORTAL, source="127.0.0.1")
        assert a.sign(text).status == 200
        assert a.sign("nope").status == 400
    finally:
        out, err = a.stop()
    assert TEST_PIN not in out and TEST_PIN not in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "signed a login challenge" in line]) == 1


def test_wrong_pin_fails_at_start(login_ca):
    p = login_ca.run("agent", "--key", login_ca.card_uri, "--port", "0", "--allow-origin", PORTAL,
                     env={"UNICA_PIN": "0000-wrong"}, timeout=60)
    assert p.returncode == 1
    assert_one_line_error(p, "pin")
    assert "0000-wrong" not in p.stdout + p.stderr


@pytest.mark.parametrize("args,code,needle", [
    (("--host", "0.0.0.0"), 2, "127.0.0.1 only"),
    (("--host", "192.0.2.1"), 2, "127.0.0.1 only"),
    (("--host", "localhost"), 2, "127.0.0.1 only"),
    (("--allow-origin", "http://portal.example.cn"), 2, "http"),
    (("--allow-origin", "https://portal.example.cn/login"), 2, "path"),
])
def test_refused_options(login_ca, args, code, needle):
    extra = () if "--allow-origin" in args else ("--allow-origin", PORTAL)
    p = login_ca.run("agent", "--key", login_ca.card_uri, "--port", "0", *extra, *args, timeout=60)
    assert p.returncode == code, p.stdout + p.stderr
    assert_one_line_error(p, needle)
    assert p.stdout == ""


def test_missing_allow_origin_and_missing_certificate(login_ca):
    p = login_ca.run("agent", "--key", login_ca.card_uri, "--port", "0", timeout=60)
    assert p.returncode == 2
    assert_one_line_error(p, "--allow-origin")
    p = login_ca.run("agent", "--key", f"pkcs11:token={login_ca.card_token};object=nosuchkey", "--port", "0",
                     "--allow-origin", PORTAL, timeout=60)
    assert p.returncode == 1
    assert_one_line_error(p)


def test_certificate_file_must_match_the_key(login_ca, tmp_path):
    _, pem, _ = login_ca.software_cert("其他")
    p = login_ca.run("agent", "--key", login_ca.card_uri, "--cert", str(pem), "--port", "0", "--allow-origin",
                     PORTAL, timeout=60)
    assert p.returncode == 2
    assert_one_line_error(p, "not the key's")


def test_port_in_use(login_ca):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = login_ca.run("agent", "--key", login_ca.card_uri, "--port", str(port), "--allow-origin", PORTAL,
                         timeout=60)
    assert p.returncode == 1
    assert_one_line_error(p, f"127.0.0.1:{port}")


def test_agent_imports_nothing_of_the_ca():
    code = ("import sys, unica.agent.app, unica.agent.card, unica.cli.agent; "
            "bad = [m for m in sys.modules if m.split('.')[:2] in (['unica', 'store'], ['unica', 'ca'], "
            "['unica', 'ra'], ['unica', 'service'], ['unica', 'sso'])] + "
            "[m for m in ('sqlalchemy',) if m in sys.modules]; print(bad)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr
