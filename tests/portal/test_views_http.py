"""The portal's role pages over HTTP: the real ``unica serve`` over TLS on 127.0.0.1 (one per module),
sessions from real card logins (GET /login/challenge, the certificate's key signs it, POST /login:
software keys stand in for the cards, whose PKCS#11 keys a browser test drives through the agent).

The world: tests/service's joint CA (alice admin; office customs with bob) plus office ``ports``,
officers frank and grace (customs), heidi (ports), the auditor ivan, and two enterprises of customs
enrolled through the registry (an officer's application, EST with its code): harbour and other.

- an enterprise sees only itself (another's application and certificate are 404), downloads its
  certificate with the chain (openssl verifies it), applies with a CSR -- inline errors first, CSRF
  refused --, the office approves (two officers: cert.issue:enterprise-sign needs 2), and it
  collects the certificate for exactly the key of its request;
- role separation: the auditor cannot approve, an officer of another office is refused, an
  enterprise reaches no RA or audit page, an officer no audit page;
- the officer's desk: queue, look-up, a rejection needs a reason, enrollment codes (dual control:
  the second officer gets the code), the dual-control requests waiting for them;
- the auditor: filters (inline errors), details, the chain check (a tampered entry is named).
"""

from __future__ import annotations

import base64
import html
import http.client
import json
import re
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from tests.auth.conftest import pending_id
from tests.service.conftest import _service_template, copy_service_ca, start_service  # noqa: F401

COOKIE = "__Host-unica-session"
USCC = {"harbour": "91110000600037341L", "other": "91350100M00020000F", "ports": "91330100MA2B000018"}


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes
    cookies: dict

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Who:
    """A card stand-in: a software key and its certificate; ``cookie``: its portal session."""

    name: str
    key: Path
    cert: Path
    der: bytes
    cookie: str | None = None


class World:
    def __init__(self, svc, d: Path):
        self.svc, self.j, self.dir = svc, svc.joint, d
        self.who: dict[str, Who] = {}
        self.apps: dict[str, str] = {}

    def call(self, method: str, path: str, *, who: Who | None = None, form: dict | None = None, body=None,
             headers: dict | None = None, tls: Who | None = None, cookies: dict | None = None) -> Reply:
        h = dict(headers or {})
        if form is not None:
            body = urlencode(form).encode()
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif isinstance(body, (dict, list)):
            body = json.dumps(body, ensure_ascii=False).encode()
            h.setdefault("Content-Type", "application/json")
        jar = dict(cookies or {})
        if who is not None and who.cookie:
            jar[COOKIE] = who.cookie
        if jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        ctx = ssl.create_default_context(cafile=str(self.svc.ca_pem))
        if tls is not None:
            ctx.load_cert_chain(str(tls.cert), str(tls.key))
        conn = http.client.HTTPSConnection(self.svc.host, self.svc.port, context=ctx, timeout=60)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            raw = r.getheaders()
            set_cookies = {}
            for k, v in raw:
                if k.lower() == "set-cookie":
                    name, _, rest = v.partition("=")
                    set_cookies[name] = (rest.split(";", 1)[0], v)
            return Reply(r.status, {k.lower(): v for k, v in raw}, r.read(), set_cookies)
        finally:
            conn.close()

    def page(self, path: str, who: Who, status: int = 200, **kw) -> Reply:
        r = self.call("GET", path, who=who, **kw)
        assert r.status == status, (path, r.status, r.text[:3000],
                                    self.svc.log_text()[-3000:] if r.status >= 500 else "")
        return r

    def post(self, path: str, who: Who, form: dict, *, csrf: bool = True, **kw) -> Reply:
        form = dict(form)
        if csrf:
            form["csrf_token"] = self.csrf(who)
        return self.call("POST", path, who=who, form=form, **kw)

    def csrf(self, who: Who) -> str:
        r = self.page("/", who)
        m = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
        assert m, r.text[:2000]
        return html.unescape(m.group(1))

    def login(self, who: Who) -> Who:
        """A real card login over HTTP, the certificate's key signing the portal's challenge."""
        r = self.call("GET", "/login/challenge")
        assert r.status == 200, r.text
        text = r.json["challenge"]
        key = serialization.load_pem_private_key(who.key.read_bytes(), None)
        sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
        r = self.call("POST", "/login", form={"challenge": text, "signature": base64.b64encode(sig).decode(),
                                              "certificate": base64.b64encode(who.der).decode()})
        assert r.status == 303 and COOKIE in r.cookies, (r.status, r.text[:2000])
        who.cookie = r.cookies[COOKIE][0]
        return who

    def count(self, table: str) -> int:
        return self.j.sql(f"SELECT COUNT(*) FROM {table}")[0][0]


def _openssl(*args) -> subprocess.CompletedProcess:
    p = subprocess.run(["openssl", *args], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p


def _key_csr(d: Path, name: str, subject: str = "/CN=ignored") -> tuple[Path, Path]:
    key, csr = d / f"{name}.key", d / f"{name}.csr"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
             "-out", str(csr), "-utf8", "-subj", subject)
    return key, csr


def _officer(w: World, name: str, *args: str) -> Who:
    key, csr = _key_csr(w.dir, name, f"/C=CN/O=Port Joint CA/CN={name.title()}")
    pem = w.dir / f"{name}.pem"
    w.j.ok("cert", "issue", "--ca", "root", "--profile", "operator", "--csr", str(csr), "--out", str(pem), who="alice")
    w.j.ok("operator", "add", name, *args, "--cert", str(pem), who="alice")
    der = x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(Encoding.DER)
    return Who(name, key, pem, der)


def _est(w: World, app_id: str, code: str, csr: Path) -> x509.Certificate:
    der = x509.load_pem_x509_csr(csr.read_bytes()).public_bytes(Encoding.DER)
    basic = base64.b64encode(f"{app_id}:{code}".encode()).decode()
    r = w.call("POST", "/.well-known/est/simpleenroll", body=base64.encodebytes(der),
               headers={"Content-Type": "application/pkcs10", "Authorization": f"Basic {basic}"})
    assert r.status == 200, (r.status, r.text)
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(r.body))[0]


def _enterprise(w: World, key: str, name: str, holder: str) -> Who:
    """An enterprise of customs registered by frank, an application, its code, EST: its certificate."""
    frank = w.who["frank"]
    r = w.call("POST", "/api/v1/enterprises", tls=frank, body={"uscc": USCC[key], "name": name, "office": "customs"})
    assert r.status == 201, r.text
    r = w.call("POST", "/api/v1/applications", tls=frank,
               body={"uscc": USCC[key], "profile": "enterprise-sign", "holder": holder})
    assert r.status == 201 and r.json.get("code"), r.text
    keyf, csr = _key_csr(w.dir, key)
    cert = _est(w, r.json["id"], r.json["code"], csr)
    pem = w.dir / f"{key}.pem"
    pem.write_bytes(cert.public_bytes(Encoding.PEM))
    w.apps[key] = r.json["id"]
    return Who(key, keyf, pem, cert.public_bytes(Encoding.DER))


@pytest.fixture(scope="module")
def w(tmp_path_factory, _service_template):  # noqa: F811
    d = tmp_path_factory.mktemp("views")
    j = copy_service_ca(_service_template, d)
    svc = start_service(j)
    try:
        world = World(svc, d)
        j.ok("office", "add", "ports", "--ca", "root", "--profile", "enterprise-sign", who="alice")
        for name, args in (("frank", ("--role", "ra-officer", "--office", "customs")),
                           ("grace", ("--role", "ra-officer", "--office", "customs")),
                           ("heidi", ("--role", "ra-officer", "--office", "ports")),
                           ("ivan", ("--role", "auditor"))):
            world.who[name] = _officer(world, name, *args)
        world.who["harbour"] = _enterprise(world, "harbour", "海港物流有限公司", "李四")
        world.who["other"] = _enterprise(world, "other", "别家贸易有限公司", "王五")
        # a card of harbour made by an officer outside the registry (its USCC in the subject)
        key, csr = _key_csr(d, "harbour-card",
                            f"/C=CN/O=海港物流有限公司/organizationIdentifier={USCC['harbour']}/CN=孙一")
        j.ok("cert", "issue", "--ca", "root", "--profile", "enterprise-sign", "--csr", str(csr), "--out",
             str(d / "harbour-card.pem"), who="bob")
        card = x509.load_pem_x509_certificate((d / "harbour-card.pem").read_bytes())
        world.who["harbour-card"] = Who("harbour-card", key, d / "harbour-card.pem", card.public_bytes(Encoding.DER))
        # dual control from now on: the enterprises' signing certificates need two officers
        j.ok("approval-rule", "set", "cert.issue:enterprise-sign", "--approvals", "2", "--role", "ra-officer",
             who="alice")
        # a request under that rule, asked by bob's card, waiting for a second officer
        _, csr = _key_csr(d, "bob-asks", "/C=CN/O=别家贸易有限公司/organizationIdentifier=91350100M00020000F/CN=赵六")
        p = j.run("cert", "issue", "--ca", "root", "--profile", "enterprise-sign", "--csr", str(csr), "--out",
                  str(d / "bob-asks.pem"), who="bob")
        world.apps["pending-request"] = pending_id(p)
        for who in world.who.values():
            world.login(who)
        yield world
    finally:
        svc.stop()


def _security_headers(r: Reply) -> None:
    csp = r.headers.get("content-security-policy", "")
    for part in ("default-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"):
        assert part in csp, csp
    assert r.headers.get("x-frame-options") == "DENY"
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert r.headers.get("cache-control") == "no-store"


# --- the enterprise -------------------------------------------------------------------------------------


def test_an_enterprise_sees_only_itself(w):
    harbour, other = w.who["harbour"], w.who["other"]
    r = w.page("/enterprise", harbour)
    _security_headers(r)
    assert '<html lang="zh-CN">' in r.text and "海港物流有限公司" in r.text and USCC["harbour"] in r.text
    assert w.apps["harbour"] in r.text and USCC["other"] not in r.text and "别家" not in r.text
    en = w.page("/enterprise?lang=en", harbour).text
    assert '<html lang="en">' in en and "Apply for a certificate" in en
    # another enterprise's application and certificate are not found (not told apart from none)
    w.page(f"/enterprise/applications/{w.apps['other']}", harbour, 404)
    other_serial = format(x509.load_der_x509_certificate(other.der).serial_number, "x")
    w.page(f"/enterprise/certificates/{other_serial}.pem", harbour, 404)
    # a card with harbour's USCC that the registry did not issue (unica cert issue): harbour's pages too
    r = w.page("/enterprise", w.who["harbour-card"])
    assert USCC["harbour"] in r.text and w.apps["harbour"] in r.text and USCC["other"] not in r.text
    # an officer's card is no enterprise's: no enterprise pages
    w.page("/enterprise", w.who["frank"], 403)
    # no session: to the login page, with the way back
    r = w.call("GET", "/enterprise")
    assert r.status == 303 and r.headers["location"].startswith("/login?next=%2Fenterprise")


def test_the_enterprise_downloads_its_certificate_with_the_chain(w):
    harbour = w.who["harbour"]
    serial = format(x509.load_der_x509_certificate(harbour.der).serial_number, "x")
    r = w.page(f"/enterprise/certificates/{serial}.pem", harbour)
    assert r.headers["content-type"].startswith("application/pem-certificate-chain")
    assert "attachment" in r.headers["content-disposition"]
    certs = x509.load_pem_x509_certificates(r.body)
    assert certs[0].public_bytes(Encoding.DER) == harbour.der and len(certs) >= 2
    chain = w.dir / "harbour-chain.pem"
    chain.write_bytes(r.body)
    _openssl("verify", "-CAfile", str(w.svc.ca_pem), "-partial_chain", str(chain))


def test_apply_shows_errors_inline_and_refuses_a_missing_csrf_token(w):
    harbour = w.who["harbour"]
    form = w.page("/enterprise/apply", harbour).text
    assert 'for="f-holder"' in form and 'name="profile"' in form and "enterprise-sign" in form
    before = w.count("applications")
    r = w.post("/enterprise/apply", harbour, {"profile": "enterprise-sign", "holder": "李四", "csr": "x"}, csrf=False)
    assert r.status == 403
    r = w.post("/enterprise/apply", harbour, {"profile": "no-such", "holder": "", "csr": "not a request"})
    assert r.status == 422, r.text[:2000]
    _security_headers(r)
    for name in ("profile", "holder", "csr"):  # each message next to its field, which points at it
        assert f'id="e-{name}"' in r.text
        assert re.search(rf'id="f-{name}"[^>]*aria-describedby="[^"]*e-{name}"[^>]*aria-invalid="true"', r.text, re.S)
    assert 'role="alert"' in r.text
    assert w.count("applications") == before


def test_an_application_from_form_to_certificate(w):
    harbour, frank, grace = w.who["harbour"], w.who["frank"], w.who["grace"]
    key, csr = _key_csr(w.dir, "harbour-new")
    r = w.post("/enterprise/apply", harbour, {"profile": "enterprise-sign", "holder": "陈七", "contact": "0591-1234",
                                              "csr": csr.read_text()})
    assert r.status == 201, r.text[:3000]
    app_id = re.search(r"a[0-9a-f]{12}", r.text).group(0)
    token_cookie = f"__Host-unica-app-{app_id}"
    assert token_cookie in r.cookies
    attrs = r.cookies[token_cookie][1].lower()
    assert "secure" in attrs and "httponly" in attrs and "samesite=strict" in attrs
    token = r.cookies[token_cookie][0]
    assert token in r.text  # shown once on the page
    # the office's queue shows it; frank approves (1 of 2), grace approves (2 of 2)
    assert app_id in w.page("/ra", frank).text
    r = w.post(f"/ra/applications/{app_id}/decision", frank, {"decision": "approve", "reason": "营业执照已核"})
    assert r.status == 200 and "1 / 2" in r.text, r.text[:3000]
    # the same officer twice counts once: refused on the form (409), the application unchanged
    r = w.post(f"/ra/applications/{app_id}/decision", frank, {"decision": "approve", "reason": "again"})
    assert r.status == 409 and 'role="alert"' in r.text
    r = w.post(f"/ra/applications/{app_id}/decision", grace, {"decision": "approve", "reason": "复核通过"})
    assert r.status == 200 and "已批准" in r.text
    # the enterprise collects it (the status token from its cookie releases the code)
    page = w.page(f"/enterprise/applications/{app_id}", harbour, cookies={token_cookie: token}).text
    assert "领取证书" in page and 'name="status_token"' not in page
    r = w.post(f"/enterprise/applications/{app_id}/collect", harbour, {}, cookies={token_cookie: token})
    assert r.status == 200, r.text[:3000]
    serial = re.search(r'/enterprise/certificates/([0-9a-f]+)\.pem', r.text).group(1)
    pem = w.page(f"/enterprise/certificates/{serial}.pem", harbour).body
    cert = x509.load_pem_x509_certificates(pem)[0]
    mine = serialization.load_pem_private_key(key.read_bytes(), None).public_key()
    assert cert.public_key() == mine  # exactly the key of the request sent with the application
    subject = cert.subject
    assert subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "陈七"
    assert subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_IDENTIFIER)[0].value == USCC["harbour"]
    assert "已签发" in w.page(f"/enterprise/applications/{app_id}", harbour).text
    # a second collect gets the certificate already issued, nothing new
    n = w.count("certificates")
    r = w.post(f"/enterprise/applications/{app_id}/collect", harbour, {"status_token": token})
    assert w.count("certificates") == n


def test_a_revocation_request_waits_for_the_office(w):
    harbour, frank = w.who["harbour"], w.who["frank"]
    r = w.post("/enterprise/revocations", harbour, {"serial": "", "reason": "nonsense"})
    assert r.status == 422 and 'id="e-serial"' in r.text and 'id="e-reason"' in r.text
    # a certificate of its own that is not the card it is logged in with
    key, csr = _key_csr(w.dir, "harbour-extra")
    r = w.call("POST", "/api/v1/applications", tls=frank,
               body={"uscc": USCC["harbour"], "profile": "enterprise-sign", "holder": "周八"})
    assert r.status == 201
    app = r.json
    r = w.post(f"/ra/applications/{app['id']}/decision", w.who["grace"], {"decision": "approve"})
    code = re.search(r'id="enrollment-code">([^<]+)<', r.text).group(1)
    serial = format(_est(w, app["id"], html.unescape(code), csr).serial_number, "x")
    r = w.post("/enterprise/revocations", harbour, {"serial": serial, "reason": "superseded"})
    assert r.status == 202, r.text[:2000]
    req_id = re.search(r"v[0-9a-f]{12}", r.text).group(0)
    queue = w.page("/ra", frank).text
    assert req_id in queue
    # another office's officer may not decide it
    r = w.post(f"/ra/revocations/{req_id}/decision", w.who["heidi"], {"decision": "approve"})
    assert r.status == 403
    r = w.post(f"/ra/revocations/{req_id}/decision", frank, {"decision": "reject", "reason": ""})
    assert r.status == 422 and 'id="e-reason"' in r.text
    r = w.post(f"/ra/revocations/{req_id}/decision", frank, {"decision": "approve"})
    assert r.status == 200, r.text[:2000]
    assert w.j.sql("SELECT status FROM certificates WHERE serial = :s", s=serial)[0][0] == "revoked"


# --- who may do what --------------------------------------------------------------------------------------


def test_role_separation(w):
    ivan, heidi, harbour, frank = w.who["ivan"], w.who["heidi"], w.who["harbour"], w.who["frank"]
    r = w.call("POST", "/api/v1/applications", tls=frank,
               body={"uscc": USCC["other"], "profile": "enterprise-sign", "holder": "吴九"})
    app_id = r.json["id"]
    before = w.j.sql("SELECT status FROM applications WHERE id = :i", i=app_id)
    # the auditor: no RA page, and cannot approve (403, nothing changes, the refusal is audited)
    w.page("/ra", ivan, 403)
    r = w.post(f"/ra/applications/{app_id}/decision", ivan, {"decision": "approve", "reason": "x"})
    assert r.status == 403
    # an officer of another office: the application is not theirs to see or decide
    w.page(f"/ra/applications/{app_id}", heidi, 403)
    r = w.post(f"/ra/applications/{app_id}/decision", heidi, {"decision": "approve", "reason": "x"})
    assert r.status == 403
    assert USCC["other"] not in w.page("/ra/enterprises?q=9", heidi).text
    w.page(f"/ra/enterprises/{USCC['other']}", heidi, 403)
    # an enterprise: no RA nor audit page, no decision; an officer: no audit page
    w.page("/ra", harbour, 403)
    assert w.post(f"/ra/applications/{app_id}/decision", harbour, {"decision": "approve"}).status == 403
    w.page("/audit", harbour, 403)
    w.page("/audit", frank, 403)
    w.page("/audit/verify", frank, 403)
    assert w.j.sql("SELECT status FROM applications WHERE id = :i", i=app_id) == before
    refused = w.j.sql("SELECT details FROM audit_log WHERE event = 'auth.refused' AND target = 'application.decide'")
    assert any("ivan" in str(d) for (d,) in refused) and any("heidi" in str(d) for (d,) in refused), refused
    # a form posted from another origin, or with another session's token, is refused
    r = w.post(f"/ra/applications/{app_id}/decision", frank, {"decision": "approve"},
               headers={"Origin": "https://evil.example"})
    assert r.status == 403
    form = {"decision": "approve", "csrf_token": w.csrf(w.who["grace"])}
    assert w.call("POST", f"/ra/applications/{app_id}/decision", who=frank, form=form).status == 403
    assert w.j.sql("SELECT status FROM applications WHERE id = :i", i=app_id) == before


def test_the_officer_looks_up_rejects_with_a_reason_and_issues_codes(w):
    frank, grace = w.who["frank"], w.who["grace"]
    r = w.page("/ra/enterprises?q=" + quote("海港"), frank)
    assert USCC["harbour"] in r.text and USCC["other"] not in r.text
    assert USCC["other"] in w.page("/ra/enterprises?q=" + USCC["other"][:10], frank).text
    r = w.call("GET", "/ra/enterprises?q=" + "x" * 65, who=frank)
    assert r.status == 422 and 'id="e-q"' in r.text
    assert "海港物流有限公司" in w.page(f"/ra/enterprises/{USCC['harbour']}", frank).text
    # an enrollment code: under the rule, frank's application waits for grace, who gets the code
    r = w.post("/ra/codes", frank, {"uscc": "91110000600037341M", "profile": "enterprise-sign", "holder": ""})
    assert r.status == 422 and 'id="e-uscc"' in r.text and 'id="e-holder"' in r.text
    r = w.post("/ra/codes", frank, {"uscc": USCC["harbour"], "profile": "enterprise-sign", "holder": "郑十"})
    assert r.status == 201 and "enrollment-code" not in r.text and "1/2" in r.text.replace(" ", ""), r.text[:3000]
    app_id = re.search(r"a[0-9a-f]{12}", r.text).group(0)
    # a rejection needs a reason (shown next to the field)
    r = w.post(f"/ra/applications/{app_id}/decision", grace, {"decision": "reject", "reason": "  "})
    assert r.status == 422 and 'id="e-reason"' in r.text
    assert w.j.sql("SELECT status FROM applications WHERE id = :i", i=app_id)[0][0] == "submitted"
    r = w.post(f"/ra/applications/{app_id}/decision", grace, {"decision": "approve", "reason": "ok"})
    assert r.status == 200
    code = html.unescape(re.search(r'id="enrollment-code">([^<]+)<', r.text).group(1))
    _, csr = _key_csr(w.dir, "zheng")
    assert _est(w, app_id, code, csr).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "郑十"
    # a rejected one
    r = w.post("/ra/codes", frank, {"uscc": USCC["harbour"], "profile": "enterprise-sign", "holder": "钱十一"})
    app_id = re.search(r"a[0-9a-f]{12}", r.text).group(0)
    r = w.post(f"/ra/applications/{app_id}/decision", grace, {"decision": "reject", "reason": "材料不全"})
    assert r.status == 200 and "已驳回" in r.text
    assert w.j.sql("SELECT status, reason FROM applications WHERE id = :i", i=app_id)[0] == ("rejected", "材料不全")


def test_dual_control_requests_wait_for_the_officer(w):
    req = w.apps["pending-request"]
    assert req in w.page("/ra", w.who["frank"]).text
    assert f"unica approval approve {req}" in w.page("/ra", w.who["grace"]).text


# --- the auditor -----------------------------------------------------------------------------------------


def test_the_auditor_filters_and_checks_the_chain(w):
    ivan = w.who["ivan"]
    r = w.page("/audit?event=application.*", ivan)
    _security_headers(r)
    assert "application.approved" in r.text and "certificate.revoked" not in r.text
    assert "uscc=" in r.text  # the details are shown to an auditor
    r = w.call("GET", "/audit?since=yesterday&event=" + "e" * 80, who=ivan)
    assert r.status == 422 and 'id="e-since"' in r.text and 'id="e-event"' in r.text
    r = w.page("/audit/verify", ivan)
    assert 'id="verdict"' in r.text and "审计链完整" in r.text
    # a tampered entry is named
    n = w.j.sql("SELECT MIN(id) FROM audit_log WHERE event = 'application.approved'")[0][0]
    w.j.sql("UPDATE audit_log SET target = 'a000000000000' WHERE id = :n", n=n)
    r = w.page("/audit/verify", ivan)
    assert "edited" in r.text and f"#{n}" in r.text and 'role="alert"' in r.text
