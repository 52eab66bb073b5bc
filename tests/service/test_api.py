"""The REST API (/api/v1) end to end: the real ``unica serve`` over TLS on 127.0.0.1, real clients
(Python's http.client/ssl with client certificates, curl, openssl), the real database.

- an RA officer (mTLS with an operator certificate) registers an enterprise, finds it, creates an
  application; under the rule cert.issue:enterprise-sign = 2 a second officer's approval releases
  the code; Idempotency-Key makes a retried registration answer the first result;
- self-service: an application with a CSR and no certificate; two officers approve (the same
  officer twice counts once); the status token gets the code exactly once; EST enrolls with it; the
  enterprise (mTLS with its new certificate) sees itself, its certificates and applications, and
  downloads the certificate with its chain (openssl verifies it); it asks for revocation
  (keyCompromise): ``openssl ocsp`` against unica's responder says revoked, the next CRL lists it,
  and the revoked certificate no longer opens /me;
- a revocation request signed with the card (CMS by ``openssl cms``): pending until an officer
  decides; the same request again, a stale one, a tampered one and one signed by another
  enterprise's certificate are refused;
- refusals (wrong role, other office, a profile the office may not use, a revoked or expired client
  certificate, malformed bodies, a bad USCC, a wrong status token, the replayed, stale, tampered or
  foreign signed request) leave the database as it was and are audited with the office (where the
  client has one) and the client.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import json
import secrets
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from tests.service.conftest import OCSPResponder

USCC = {  # valid codes (check character verified), one per enterprise of these tests
    "harbour": "91110000600037341L",
    "selfie": "91310000MA1FL1234Q",
    "signer": "91440300MA5D12345W",
    "other": "91350100M00020000F",
    "ports": "91330100MA2B000018",
}
BAD_USCC = "91110000600037341M"  # the check character is L


# --- clients -----------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def problem(self) -> str:
        assert self.headers.get("content-type", "").startswith("application/problem+json"), (self.status, self.body)
        return self.json["type"].rsplit(":", 1)[-1]


@dataclass
class Identity:
    """A TLS client identity: certificate and software key files (None: no certificate)."""

    name: str
    cert: Path | None = None
    key: Path | None = None
    der: bytes = b""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()


ANON = Identity("anonymous")


@dataclass
class World:
    svc: object  # the service fixture: url, ca_pem, env, home, ...
    j: object  # the joint CA (run/ok/sql)
    dir: Path
    host: str
    port: int
    ca_pem: Path
    root_pem: Path
    ids: dict = field(default_factory=dict)

    def call(self, who: Identity, method: str, path: str, body=None, *, headers: dict | None = None,
             raw: bytes | None = None) -> Reply:
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        if who.cert is not None:
            ctx.load_cert_chain(str(who.cert), str(who.key))
        conn = http.client.HTTPSConnection(self.host, self.port, context=ctx, timeout=60)
        h = {"Accept": "application/json", **(headers or {})}
        data = raw
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path if path.startswith("/.well-known") else "/api/v1" + path, body=data,
                         headers=h)
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def ok(self, who: Identity, method: str, path: str, body=None, *, status=(200, 201), **kw) -> Reply:
        r = self.call(who, method, path, body, **kw)
        assert r.status in ((status,) if isinstance(status, int) else status), (r.status, r.body)
        return r

    def curl(self, who: Identity, *args: str) -> subprocess.CompletedProcess:
        tls = ["--cacert", str(self.ca_pem)]
        if who.cert is not None:
            tls += ["--cert", str(who.cert), "--key", str(who.key)]
        return subprocess.run(["curl", "-sS", "--max-time", "60", *tls, *args], capture_output=True, timeout=90)

    def url(self, path: str) -> str:
        return f"https://{self.host}:{self.port}/api/v1{path}"


def _openssl(*args, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(["openssl", *args], capture_output=True, timeout=60, **kw)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p


def _software_csr(d: Path, name: str, subject: str) -> tuple[Path, Path]:
    key, csr = d / f"{name}.key", d / f"{name}.csr"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
             "-out", str(csr), "-utf8", "-subj", subject)
    return key, csr


def _der_of_pem(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def _officer(w: World, name: str, *roles_office: str) -> Identity:
    """An operator with a software key (Python's ssl cannot use a card), issued under the operator
    profile by the admin alice and added with the given role/office options."""
    key, csr = _software_csr(w.dir, name, f"/C=CN/O=Port Joint CA/CN={name.title()}")
    pem = w.dir / f"{name}.pem"
    w.j.ok("cert", "issue", "--ca", "root", "--profile", "operator", "--csr", str(csr), "--out", str(pem), who="alice")
    w.j.ok("operator", "add", name, *roles_office, "--cert", str(pem), who="alice")
    return Identity(name, pem, key, _der_of_pem(pem))


# --- the database before and after --------------------------------------------------------------------------

_NOT_STATE = {"audit_log", "audit_head", "audit_seals", "ocsp_responses"}


def snapshot(w: World) -> dict:
    """Every row of every table but the audit log's (and pre-signed OCSP responses, which the
    responder refreshes on its own)."""
    from sqlalchemy import create_engine, inspect, text

    eng = create_engine(w.j.db_url())
    try:
        with eng.connect() as c:
            return {t: sorted(repr(tuple(r)) for r in c.execute(text(f"SELECT * FROM {t}")))
                    for t in inspect(eng).get_table_names() if t not in _NOT_STATE}
    finally:
        eng.dispose()


def last_audit_id(w: World) -> int:
    return w.j.sql("SELECT COALESCE(MAX(id), 0) FROM audit_log")[0][0]


def audits_since(w: World, n: int) -> list[tuple[str, str, str]]:
    return [(e, a or "", d if isinstance(d, str) else json.dumps(d, ensure_ascii=False))
            for e, a, d in w.j.sql("SELECT event, actor, details FROM audit_log WHERE id > :n ORDER BY id", n=n)]


def assert_refused(w: World, attempt, *, status: int, slug: str, office: str, client: Identity | str,
                   event: str | None = None) -> Reply:
    """``attempt()`` is refused with ``status``/``slug``, the database is as it was, and an audit
    entry names the office and the client (its certificate's SHA-256, or its operator name)."""
    before, n = snapshot(w), last_audit_id(w)
    r = attempt()
    assert r.status == status and r.problem == slug, (r.status, r.body)
    assert snapshot(w) == before, "a refusal changed the database"
    entries = audits_since(w, n)
    assert entries, "the refusal was not audited"
    marks = [client] if isinstance(client, str) else [client.sha256, client.name]
    hits = [e for e in entries if (event is None or e[0] == event) and office in e[2]
            and any(m and (m in e[2] or m == e[1]) for m in marks)]
    assert hits, f"no audit entry names office {office} and client {marks}: {entries}"
    return r


# --- the world --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(api_service, tmp_path_factory):
    svc = api_service
    j = svc.joint
    d = tmp_path_factory.mktemp("api-world")
    w = World(svc, j, d, svc.host, svc.port, Path(svc.ca_pem), Path(svc.ca_pem))  # the service's CA is root
    j.ok("office", "add", "ports", "--ca", "root", "--profile", "enterprise-sign", who="alice")
    w.ids["frank"] = _officer(w, "frank", "--role", "ra-officer", "--office", "customs")
    w.ids["grace"] = _officer(w, "grace", "--role", "ra-officer", "--office", "customs")
    w.ids["heidi"] = _officer(w, "heidi", "--role", "ra-officer", "--office", "ports")
    w.ids["ivan"] = _officer(w, "ivan", "--role", "auditor")
    w.ids["judy"] = judy = _officer(w, "judy", "--role", "ra-officer", "--office", "customs")
    serial = x509.load_der_x509_certificate(judy.der).serial_number
    j.ok("cert", "revoke", format(serial, "x"), "--ca", "root", "--reason", "keyCompromise", who="alice")
    # dual control for the enterprises' signing certificates: two distinct officers
    j.ok("approval-rule", "set", "cert.issue:enterprise-sign", "--approvals", "2", "--role", "ra-officer",
         who="alice")
    return w


def _register(w: World, key: str, name: str, office: str = "customs", who: str = "frank") -> dict:
    return w.ok(w.ids[who], "POST", "/enterprises", {"uscc": USCC[key], "name": name, "legal_rep": "王五",
                                                      "office": office}, status=201).json


def _approved_application(w: World, key: str, holder: str, office_officers=("frank", "grace")) -> tuple[str, str]:
    """An officer-made application approved by two officers: (id, code)."""
    a, b = (w.ids[n] for n in office_officers)
    app = w.ok(a, "POST", "/applications", {"uscc": USCC[key], "profile": "enterprise-sign", "holder": holder},
               status=201).json
    assert app["status"] == "submitted" and app.get("code") is None, app
    dec = w.ok(b, "POST", f"/applications/{app['id']}/decision", {"approve": True, "reason": "papers checked"}).json
    assert dec["status"] == "approved" and dec.get("code"), dec
    return app["id"], dec["code"]


def est_enroll(w: World, app_id: str, code: str, csr_der: bytes) -> Reply:
    basic = base64.b64encode(f"{app_id}:{code}".encode()).decode()
    return w.call(ANON, "POST", "/.well-known/est/simpleenroll", raw=base64.encodebytes(csr_der),
                  headers={"Content-Type": "application/pkcs10", "Authorization": f"Basic {basic}",
                           "Accept": "*/*"})


def _enroll(w: World, name: str, app_id: str, code: str, key_csr: tuple[Path, Path] | None = None) -> Identity:
    key, csr = key_csr or _software_csr(w.dir, name, "/C=CN/O=Whatever the CSR says/CN=not the holder")
    csr_der = x509.load_pem_x509_csr(csr.read_bytes()).public_bytes(Encoding.DER)
    r = est_enroll(w, app_id, code, csr_der)
    assert r.status == 200, (r.status, r.body)
    certs = pkcs7.load_der_pkcs7_certificates(base64.b64decode(r.body))
    pem = w.dir / f"{name}.pem"
    pem.write_bytes(certs[0].public_bytes(Encoding.PEM))
    return Identity(name, pem, key, certs[0].public_bytes(Encoding.DER))


# --- officers -------------------------------------------------------------------------------------------


def test_officer_registers_an_enterprise_and_creates_an_application(world):
    w = world
    frank, grace = w.ids["frank"], w.ids["grace"]
    ent = _register(w, "harbour", "厦门港务示例有限公司")
    assert ent["uscc"] == USCC["harbour"] and ent["office"] == "customs" and ent["status"] == "active", ent
    # found by USCC, by part of the name, and by its own URL
    assert [e["uscc"] for e in w.ok(grace, "GET", f"/enterprises?uscc={USCC['harbour']}").json] == [USCC["harbour"]]
    found = w.ok(grace, "GET", "/enterprises?q=" + urllib.request.quote("港务")).json
    assert USCC["harbour"] in [e["uscc"] for e in found], found
    assert w.ok(frank, "GET", f"/enterprises/{USCC['harbour']}").json["name"] == "厦门港务示例有限公司"
    # the application: the creating officer counts once, the rule needs two
    app = w.ok(frank, "POST", "/applications", {"uscc": USCC["harbour"], "profile": "enterprise-sign",
                                                "holder": "张三"}, status=201)
    assert app.headers.get("cache-control") == "no-store"
    a = app.json
    assert a["status"] == "submitted" and a.get("code") is None and a["holder"] == "张三", a
    assert w.ok(grace, "GET", f"/applications/{a['id']}").json["status"] == "submitted"
    queue = w.ok(grace, "GET", "/applications?status=submitted").json
    assert a["id"] in [x["id"] for x in queue], queue
    # the same officer again does not make two
    r = assert_refused(w, lambda: w.call(frank, "POST", f"/applications/{a['id']}/decision",
                                         {"approve": True, "reason": "again"}),
                       status=409, slug="already-decided", office="customs", client=frank)
    assert w.ok(grace, "GET", f"/applications/{a['id']}").json["status"] == "submitted"
    # the second officer's approval releases the code; a retry with the same Idempotency-Key gets the
    # same answer (the same code), not a second decision
    key = {"Idempotency-Key": secrets.token_hex(16)}
    decision = {"approve": True, "reason": "papers checked"}
    dec = w.ok(grace, "POST", f"/applications/{a['id']}/decision", decision, headers=key)
    assert dec.json["status"] == "approved" and len(dec.json["code"]) >= 16, dec.json
    assert dec.headers.get("cache-control") == "no-store"
    again = w.ok(grace, "POST", f"/applications/{a['id']}/decision", decision, headers=key)
    assert again.json == dec.json and again.headers.get("idempotent-replayed") == "true", again.headers
    assert w.j.sql("SELECT COUNT(*) FROM application_approvals WHERE application_id = :i", i=a["id"])[0][0] == 2
    # without the key, a second decision is refused: the application is decided
    r = w.call(grace, "POST", f"/applications/{a['id']}/decision", decision)
    assert r.status == 409 and r.problem in ("already-decided", "application-decided"), r.body
    # only a salted hash of the code is stored
    stored = w.j.sql("SELECT code_hash, code_salt FROM applications WHERE id = :i", i=a["id"])[0]
    assert dec.json["code"] not in " ".join(map(str, stored))
    # curl, as an office's own tooling would call it
    p = w.curl(frank, "-H", "Accept: application/json", w.url(f"/applications/{a['id']}"))
    assert p.returncode == 0 and json.loads(p.stdout)["status"] == "approved", p.stdout + p.stderr


def test_idempotency_key_replays_the_first_registration(world):
    w = world
    frank = w.ids["frank"]
    body = {"uscc": USCC["ports"], "name": "杭州口岸示例有限公司", "office": "customs"}
    key = secrets.token_hex(16)
    first = w.ok(frank, "POST", "/enterprises", body, headers={"Idempotency-Key": key}, status=201)
    again = w.ok(frank, "POST", "/enterprises", body, headers={"Idempotency-Key": key}, status=201)
    assert again.json == first.json and again.headers.get("idempotent-replayed") == "true", again.headers
    assert w.j.sql("SELECT COUNT(*) FROM enterprises WHERE uscc = :u", u=USCC["ports"])[0][0] == 1
    other = w.call(frank, "POST", "/enterprises", {**body, "name": "另一个"}, headers={"Idempotency-Key": key})
    assert other.status == 422 and other.problem == "idempotency-mismatch", other.body
    # without a key, the second registration of the same USCC is refused
    assert_refused(w, lambda: w.call(frank, "POST", "/enterprises", body), status=409, slug="enterprise-exists",
                   office="customs", client=frank)


# --- self-service through revocation -------------------------------------------------------------------


def test_self_service_to_revocation_ocsp_and_crl(world):
    w = world
    frank, grace = w.ids["frank"], w.ids["grace"]
    applied = _software_csr(w.dir, "selfie-applied", "/C=CN/O=自助示例有限公司/CN=李四")
    csr = applied[1]
    # 1. the enterprise applies, with no certificate
    r = w.ok(ANON, "POST", "/applications/self-service",
             {"uscc": USCC["selfie"], "name": "自助示例有限公司", "office": "customs", "profile": "enterprise-sign",
              "holder": "李四", "contact": "li.si@example.cn", "csr": csr.read_text()}, status=201)
    assert r.headers.get("cache-control") == "no-store"
    app_id, token = r.json["id"], r.json["status_token"]
    assert r.json["status"] == "submitted"
    assert token not in " ".join(map(str, w.j.sql("SELECT * FROM applications WHERE id = :i", i=app_id)[0]))
    bearer = {"Authorization": f"Bearer {token}"}
    st = w.ok(ANON, "GET", f"/applications/{app_id}/status", headers=bearer).json
    assert st["status"] == "submitted" and st.get("code") is None, st
    # 2. dual control: the first approval is not enough
    one = w.ok(frank, "POST", f"/applications/{app_id}/decision", {"approve": True, "reason": "营业执照 checked"}).json
    assert one["status"] == "submitted" and one.get("code") is None, one
    assert w.ok(ANON, "GET", f"/applications/{app_id}/status", headers=bearer).json.get("code") is None
    two = w.ok(grace, "POST", f"/applications/{app_id}/decision", {"approve": True, "reason": "second look"}).json
    assert two["status"] == "approved", two
    # 3. the status token gets the code, once
    st = w.ok(ANON, "GET", f"/applications/{app_id}/status", headers=bearer)
    code = st.json["code"]
    assert code and st.json["status"] == "approved" and st.headers.get("cache-control") == "no-store", st.json
    assert w.ok(ANON, "GET", f"/applications/{app_id}/status", headers=bearer).json.get("code") is None
    # 4. enroll (EST, HTTP Basic with the id and the code): only the key of the CSR the office
    # approved is certified; the identity comes from the registry
    other_key = _software_csr(w.dir, "selfie-other", "/CN=another key")[1]
    r = est_enroll(w, app_id, code, x509.load_pem_x509_csr(other_key.read_bytes()).public_bytes(Encoding.DER))
    assert r.status == 403 and r.problem == "key-mismatch", (r.status, r.body)
    ent = _enroll(w, "selfie", app_id, code, applied)
    cert = x509.load_der_x509_certificate(ent.der)
    subject = {a.oid.dotted_string: a.value for a in cert.subject}
    assert subject["2.5.4.10"] == "自助示例有限公司" and subject["2.5.4.3"] == "李四", cert.subject
    assert USCC["selfie"] in subject["2.5.4.97"], cert.subject
    serial = format(cert.serial_number, "x")
    # 5. the enterprise over mTLS with its certificate
    me = w.ok(ent, "GET", "/me").json
    assert me["uscc"] == USCC["selfie"] and me["office"] == "customs", me
    mine = w.ok(ent, "GET", "/me/certificates").json
    assert [int(c["serial"], 16) for c in mine] == [cert.serial_number], mine
    apps = w.ok(ent, "GET", "/me/applications").json
    assert [(a["id"], a["status"]) for a in apps] == [(app_id, "enrolled")], apps
    r = w.ok(ent, "GET", f"/me/certificates/{serial}", headers={"Accept": "application/pem-certificate-chain"})
    assert r.headers["content-type"].startswith("application/pem-certificate-chain")
    no = w.call(ent, "GET", f"/me/certificates/{serial}", headers={"Accept": "application/json"})
    assert no.status == 406 and no.problem == "not-acceptable", no.body
    chain = x509.load_pem_x509_certificates(r.body)
    assert chain[0].public_bytes(Encoding.DER) == ent.der and len(chain) == 2, chain
    bundle = w.dir / "selfie-chain.pem"
    bundle.write_bytes(r.body)
    _openssl("verify", "-CAfile", str(w.root_pem), "-purpose", "sslclient", str(ent.cert))
    # the same download with curl (the enterprise's own client)
    p = w.curl(ent, "-H", "Accept: application/pem-certificate-chain", w.url(f"/me/certificates/{serial}"))
    assert p.returncode == 0 and p.stdout == r.body, p.stderr
    # 6. revocation, keyCompromise: at once; OCSP and the next CRL say so
    w.j.ok("ocsp", "configure", "--ca", "root", "--mode", "live", who="alice")
    w.j.ok("ocsp", "signer", "--ca", "root", "--token", w.j.hsm, who="alice")
    ocsp = OCSPResponder(w.j.env, w.dir, w.root_pem)
    try:
        out = ocsp.ask(ent.cert)
        assert "Response verify OK" in out and ": good" in out, out
        rv = w.ok(ent, "POST", "/me/revocation-requests", {"serial": serial, "reason": "keyCompromise"}, status=201)
        assert rv.json["status"] == "done" and rv.json["reason"] == "keyCompromise", rv.json
        deadline = time.time() + 10
        while True:
            out = ocsp.ask(ent.cert)
            if ": revoked" in out or time.time() > deadline:
                break
            time.sleep(0.3)
        assert "Response verify OK" in out and ": revoked" in out and "Reason: keyCompromise" in out, out
    finally:
        ocsp.stop()
    crl = w.dir / "root.crl"
    w.j.ok("crl", "generate", "--ca", "root", "--out", str(crl), who="alice")
    p = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(crl), "-CAfile", str(w.root_pem), "-noout"],
                       capture_output=True, text=True, timeout=60)
    assert "verify OK" in p.stdout + p.stderr, p.stdout + p.stderr
    listed = x509.load_der_x509_crl(crl.read_bytes()).get_revoked_certificate_by_serial_number(cert.serial_number)
    assert listed is not None, "the next CRL does not list the revoked certificate"
    assert listed.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    # 7. the revoked certificate opens nothing any more (refused, audited, nothing changed)
    assert_refused(w, lambda: w.call(ent, "GET", "/me"), status=403, slug="client-certificate", office="customs",
                   client=ent)


# --- the card-signed revocation request ------------------------------------------------------------------


def _signed_request(w: World, signer: Identity, serial: str, reason: str, *, nonce: str | None = None,
                    at: dt.datetime | None = None, tag: str = "") -> bytes:
    content = json.dumps({"serial": serial, "reason": reason, "nonce": nonce or secrets.token_urlsafe(18),
                          "time": (at or dt.datetime.now(dt.timezone.utc)).isoformat()}).encode()
    src = w.dir / f"revoke-{serial}{tag}.json"
    out = w.dir / f"revoke-{serial}{tag}.p7m"
    src.write_bytes(content)
    _openssl("cms", "-sign", "-in", str(src), "-signer", str(signer.cert), "-inkey", str(signer.key), "-nodetach",
             "-binary", "-md", "sha256", "-outform", "DER", "-out", str(out))
    return out.read_bytes()


def test_card_signed_revocation_request_pending_then_decided_and_replay_refused(world):
    w = world
    frank, heidi = w.ids["frank"], w.ids["heidi"]
    _register(w, "signer", "深圳签名示例有限公司")
    a = _enroll(w, "signer-a", *_approved_application(w, "signer", "王一"))
    b = _enroll(w, "signer-b", *_approved_application(w, "signer", "王二"))
    b_serial = format(x509.load_der_x509_certificate(b.der).serial_number, "x")
    cms = _signed_request(w, a, b_serial, "superseded")
    send = {"Content-Type": "application/pkcs7-mime"}
    key = {"Idempotency-Key": secrets.token_hex(16)}
    r = w.ok(ANON, "POST", "/revocation-requests", raw=cms, headers={**send, **key}, status=202)
    req = r.json
    assert req["status"] == "pending" and req["reason"] == "superseded", req
    # a network retry with the same Idempotency-Key gets the first answer; without it, it is a replay
    again = w.ok(ANON, "POST", "/revocation-requests", raw=cms, headers={**send, **key}, status=202)
    assert again.json == req and again.headers.get("idempotent-replayed") == "true", again.headers
    # the same request again: a replay
    assert_refused(w, lambda: w.call(ANON, "POST", "/revocation-requests", raw=cms, headers=send), status=409,
                   slug="replay", office="customs", client=a)
    # stale (outside the time window), tampered, unsigned content types
    stale = _signed_request(w, a, b_serial, "superseded", at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1),
                            tag="-stale")
    assert_refused(w, lambda: w.call(ANON, "POST", "/revocation-requests", raw=stale, headers=send), status=403,
                   slug="replay", office="customs", client=a)
    fresh = _signed_request(w, a, b_serial, "superseded", tag="-tampered")
    i = fresh.index(b"superseded")
    tampered = fresh[:i] + b"Superseded" + fresh[i + 10:]
    assert_refused(w, lambda: w.call(ANON, "POST", "/revocation-requests", raw=tampered,
                                     headers={"Content-Type": "application/cms"}),
                   status=403, slug="signature-invalid", office="customs", client=a)
    r = w.call(ANON, "POST", "/revocation-requests", raw=b"{}", headers={"Content-Type": "application/json"})
    assert r.status == 415, r.body
    # the officer queue: heidi (another office) neither sees nor decides it
    mine = w.ok(frank, "GET", "/revocation-requests?status=pending").json
    assert req["id"] in [x["id"] for x in mine], mine
    assert req["id"] not in [x["id"] for x in w.ok(heidi, "GET", "/revocation-requests?status=pending").json]
    assert_refused(w, lambda: w.call(heidi, "POST", f"/revocation-requests/{req['id']}/decision",
                                     {"approve": True, "reason": "x"}),
                   status=403, slug="not-authorized", office="ports", client=heidi)
    done = w.ok(frank, "POST", f"/revocation-requests/{req['id']}/decision", {"approve": True, "reason": "ok"}).json
    assert done["status"] == "done", done
    assert w.j.sql("SELECT status, revocation_reason FROM certificates WHERE serial = :s", s=b_serial) == [
        ("revoked", "superseded")]


def test_card_signed_request_of_another_enterprise_is_refused(world):
    w = world
    _register(w, "other", "福州他人示例有限公司")
    stranger = _enroll(w, "other-a", *_approved_application(w, "other", "赵六"))
    # a certificate of the 'signer' enterprise (made by the previous test, or made here)
    rows = w.j.sql("SELECT c.serial FROM certificates c JOIN enterprises e ON c.enterprise_id = e.id "
                   "WHERE e.uscc = :u AND c.status = 'valid'", u=USCC["signer"])
    if not rows:
        _register(w, "signer", "深圳签名示例有限公司")
        _enroll(w, "signer-c", *_approved_application(w, "signer", "王三"))
        rows = w.j.sql("SELECT c.serial FROM certificates c JOIN enterprises e ON c.enterprise_id = e.id "
                       "WHERE e.uscc = :u AND c.status = 'valid'", u=USCC["signer"])
    cms = _signed_request(w, stranger, rows[0][0], "keyCompromise", tag="-stranger")
    assert_refused(w, lambda: w.call(ANON, "POST", "/revocation-requests", raw=cms,
                                     headers={"Content-Type": "application/pkcs7-mime"}),
                   status=403, slug="not-your-certificate", office="customs", client=stranger)


# --- refusals ------------------------------------------------------------------------------------------------


NEW = {"uscc": "91110108MA01ABCD2H", "name": "新公司", "office": "customs"}


def _customs_application(w: World) -> dict:
    if not w.j.sql("SELECT 1 FROM enterprises WHERE uscc = :u", u=USCC["harbour"]):
        _register(w, "harbour", "厦门港务示例有限公司")
    return w.ok(w.ids["frank"], "POST", "/applications", {"uscc": USCC["harbour"], "profile": "enterprise-sign",
                                                          "holder": "钱七"}, status=201).json


def test_refused_wrong_role(world):
    """An auditor (of no office) registers nothing; the refusal names the operator."""
    w = world
    ivan = w.ids["ivan"]
    before, n = snapshot(w), last_audit_id(w)
    r = w.call(ivan, "POST", "/enterprises", NEW)
    assert r.status == 403 and r.problem == "not-authorized", r.body
    assert snapshot(w) == before
    entries = audits_since(w, n)
    assert any(e == "api.refused" and "ivan" in d and ivan.sha256 in d for e, _, d in entries), entries
    # no client certificate at all where one is needed
    r = w.call(ANON, "POST", "/enterprises", NEW)
    assert r.status == 401 and r.problem == "client-certificate-required", r.body
    assert snapshot(w) == before


def test_refused_other_office(world):
    """heidi, officer of ports, neither registers into customs nor reads or decides its business."""
    w = world
    heidi = w.ids["heidi"]
    app = _customs_application(w)
    assert_refused(w, lambda: w.call(heidi, "POST", "/enterprises", NEW), status=403, slug="not-authorized",
                   office="ports", client=heidi)
    assert_refused(w, lambda: w.call(heidi, "GET", f"/enterprises/{USCC['harbour']}"), status=403,
                   slug="not-authorized", office="ports", client=heidi)
    assert_refused(w, lambda: w.call(heidi, "GET", f"/applications/{app['id']}"), status=403,
                   slug="not-authorized", office="ports", client=heidi)
    assert_refused(w, lambda: w.call(heidi, "GET", "/applications?office=customs"), status=403,
                   slug="not-authorized", office="ports", client=heidi)
    assert_refused(w, lambda: w.call(heidi, "POST", f"/applications/{app['id']}/decision",
                                     {"approve": True, "reason": "not mine"}),
                   status=403, slug="not-authorized", office="ports", client=heidi)
    # what heidi may list is her own office's: nothing of customs
    assert app["id"] not in [a["id"] for a in w.ok(heidi, "GET", "/applications").json]
    assert USCC["harbour"] not in [e["uscc"] for e in w.ok(heidi, "GET", "/enterprises").json]


def test_refused_revoked_client_certificate(world):
    """judy's operator certificate is revoked: nothing opens to it."""
    w = world
    judy = w.ids["judy"]
    assert_refused(w, lambda: w.call(judy, "POST", "/enterprises", NEW), status=403, slug="client-certificate",
                   office="customs", client=judy)


def test_refused_expired_client_certificate(world):
    """A certificate of this CA that has expired opens neither an officer's route nor /me."""
    from tests.service.conftest import expired_cert

    w = world
    old = expired_cert(w.j)
    who = Identity("expired", old.cert, old.key, old.der)
    for method, path, body in (("POST", "/enterprises", NEW), ("GET", "/me", None)):
        before, n = snapshot(w), last_audit_id(w)
        r = w.call(who, method, path, body)
        assert r.status == 403 and r.problem == "client-certificate", r.body
        assert "not valid now" in r.json["detail"], r.json
        assert snapshot(w) == before
        entries = audits_since(w, n)
        assert any(e == "service.client_refused" and who.sha256 in d for e, _, d in entries), entries


@pytest.mark.parametrize("raw", [b"{not json", json.dumps({**NEW, "extra": 1}).encode(),
                                 json.dumps({"uscc": NEW["uscc"]}).encode(), json.dumps({**NEW, "name": 7}).encode(),
                                 json.dumps([NEW]).encode()],
                         ids=["not-json", "unknown-field", "missing-field", "wrong-type", "not-an-object"])
def test_refused_malformed_body(world, raw):
    w = world
    frank = w.ids["frank"]
    r = assert_refused(w, lambda: w.call(frank, "POST", "/enterprises", raw=raw,
                                         headers={"Content-Type": "application/json"}),
                       status=400, slug="malformed", office="customs", client=frank)
    assert "Traceback" not in r.body.decode() and r.json["detail"], r.json


def test_refused_bad_uscc(world):
    """A USCC whose check character is wrong, from an officer and from a self-service applicant."""
    w = world
    frank = w.ids["frank"]
    r = assert_refused(w, lambda: w.call(frank, "POST", "/enterprises", {**NEW, "uscc": BAD_USCC}), status=400,
                       slug="uscc-invalid", office="customs", client=frank)
    assert "check character" in r.json["detail"], r.json
    assert_refused(w, lambda: w.call(ANON, "POST", "/applications/self-service",
                                     {"uscc": BAD_USCC, "name": "x", "office": "customs",
                                      "profile": "enterprise-sign", "holder": "x"}),
                   status=400, slug="uscc-invalid", office="customs", client="127.0.0.1")


def test_refused_profile_the_office_may_not_use(world):
    """customs issues enterprise-sign only: an application for tls-server is refused, from an officer
    and from a self-service applicant."""
    w = world
    frank = w.ids["frank"]
    _customs_application(w)
    assert_refused(w, lambda: w.call(frank, "POST", "/applications", {"uscc": USCC["harbour"], "profile": "tls-server",
                                                                      "holder": "www"}),
                   status=403, slug="not-authorized", office="customs", client=frank)
    r = assert_refused(w, lambda: w.call(ANON, "POST", "/applications/self-service",
                                         {"uscc": USCC["harbour"], "name": "厦门港务示例有限公司", "office": "customs",
                                          "profile": "tls-server", "holder": "www"}),
                       status=403, slug="profile-not-allowed", office="customs", client="127.0.0.1")
    assert "tls-server" in r.json["detail"], r.json


def test_refused_status_token(world):
    """A wrong status token, and none, get nothing of the application."""
    w = world
    app = _customs_application(w)
    r = assert_refused(w, lambda: w.call(ANON, "GET", f"/applications/{app['id']}/status",
                                         headers={"Authorization": "Bearer " + "x" * 43}),
                       status=401, slug="status-token", office="customs", client="127.0.0.1")
    assert r.headers.get("www-authenticate") == "Bearer"
    assert_refused(w, lambda: w.call(ANON, "GET", f"/applications/{app['id']}/status"), status=401,
                   slug="status-token", office="customs", client="127.0.0.1")


def test_openapi_document_describes_every_api_route(world):
    w = world
    ctx = ssl.create_default_context(cafile=str(w.ca_pem))
    conn = http.client.HTTPSConnection(w.host, w.port, context=ctx, timeout=30)
    conn.request("GET", "/openapi.json")
    doc = json.loads(conn.getresponse().read())
    conn.close()
    from unica.service.api import router

    for route in router.routes:
        path = "/api/v1" + route.path
        assert path in doc["paths"], path
        for method in route.methods:
            op = doc["paths"][path][method.lower()]
            assert op.get("summary") and "responses" in op, (path, method)
            if method == "POST":
                assert "requestBody" in op, (path, method)
