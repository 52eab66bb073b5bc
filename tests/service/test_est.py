"""EST (RFC 7030) end to end: the real ``unica serve`` over TLS on 127.0.0.1, spoken to by clients
unica did not write -- curl and openssl as in RFC 7030's examples, and curl with the key on a
SoftHSM2 token through OpenSSL's PKCS#11 engine (Debian's libengine-pkcs11-openssl), as an
enterprise with its USB key would. The registry side (enterprise, application, one-time code)
is made with the CLI by the office's RA officer (bob, on his card).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from tests.conftest import SOFTHSM_MODULE as SOFTHSM

USCC = "91350100M000100Y43"
NAME = "示例科技有限公司"
OTHER_USCC = "9144030071526726XG"
EST = "/.well-known/est"
TOKEN_PIN = "246810"


# --- clients -----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def problem(self) -> dict:
        assert self.headers.get("content-type", "").startswith("application/problem+json"), self.headers
        return json.loads(self.body)


def run(*argv, env: dict | None = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in argv], env={**os.environ, **(env or {})}, capture_output=True, **kw)
    if check:
        assert p.returncode == 0, (argv, p.stdout, p.stderr)
    return p


def curl_start(site, path: str, *args, work: Path, env: dict | None = None, tag: str = "curl"):
    """Start one request with curl (``-sS``, the service's CA as the trust anchor); :func:`curl_reply`
    waits for it."""
    hdr, body = work / f"{tag}.headers", work / f"{tag}.body"
    for f in (hdr, body):
        f.unlink(missing_ok=True)
    argv = ["curl", "-sS", "--cacert", site.ca_pem, "-D", hdr, "-o", body, "-w", "%{http_code}", *args, site.url + path]
    proc = subprocess.Popen([str(a) for a in argv], env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, hdr, body


def curl_reply(started) -> Reply:
    proc, hdr, body = started
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"curl exit {proc.returncode}: {err}"
    headers = {}
    for line in hdr.read_text(encoding="latin-1").splitlines():
        k, sep, v = line.partition(":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    return Reply(int(out.strip()), headers, body.read_bytes() if body.exists() else b"")


def curl(site, path: str, *args, work: Path, env: dict | None = None) -> Reply:
    """One request with curl, its answer."""
    return curl_reply(curl_start(site, path, *args, work=work, env=env))


def certs_from_pkcs7(data: bytes, work: Path, name: str) -> list[x509.Certificate]:
    """openssl's reading of a base64 certs-only PKCS#7: ``openssl base64 -d | openssl pkcs7 -print_certs``."""
    b64 = work / f"{name}.p7.b64"
    b64.write_bytes(data)
    der = work / f"{name}.p7.der"
    run("openssl", "base64", "-d", "-in", b64, "-out", der)
    pem = work / f"{name}.pem"
    run("openssl", "pkcs7", "-inform", "DER", "-in", der, "-print_certs", "-out", pem)
    return x509.load_pem_x509_certificates(pem.read_bytes())


def software_csr(work: Path, name: str, subject: str = "/CN=whoever") -> tuple[Path, Path]:
    """A P-256 key and a base64 DER PKCS#10 made by openssl (RFC 7030's example client)."""
    key, der, b64 = work / f"{name}.key", work / f"{name}.csr.der", work / f"{name}.csr.b64"
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-utf8",
        "-keyout", key, "-subj", subject, "-outform", "DER", "-out", der)
    run("openssl", "base64", "-in", der, "-out", b64)
    return key, b64


def enroll_args(app_id: str, code: str, b64: Path) -> list:
    return ["--user", f"{app_id}:{code}", "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{b64}"]


def spki(cert_or_key) -> bytes:
    return cert_or_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def assert_registry_subject(cert: x509.Certificate, holder: str, uscc: str = USCC, name: str = NAME) -> None:
    s = cert.subject
    assert s.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "CN"
    assert s.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == name
    assert s.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)[0].value == uscc
    assert s.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == holder


# --- the registry side (the RA officer on the CLI) -----------------------------------------------


def new_application(site, holder: str, *, uscc: str = USCC, name: str = NAME) -> tuple[str, str]:
    """Register the enterprise (once) and create an application: (application id, code)."""
    if not site.sql("SELECT id FROM enterprises WHERE uscc = :u", u=uscc):
        site.ok("enterprise", "add", "--uscc", uscc, "--name", name, "--office", "customs", who="bob")
    p = site.ok("application", "create", "--uscc", uscc, "--profile", "enterprise-sign", "--holder", holder,
                "--ca", "root", "--json", who="bob")
    created = json.loads(p.stdout)
    assert re.fullmatch(r"a[0-9a-f]{12}", created["id"]) and created["status"] == "approved", created
    return created["id"], created["code"]


def count(site, table: str) -> int:
    return site.sql(f"SELECT count(*) FROM {table}")[0][0]


# --- the enterprise's token (its own SoftHSM2 store, not the CA's) -------------------------------


@dataclass
class Token:
    label: str
    env: dict  # SOFTHSM2_CONF (the enterprise's token store) and OPENSSL_CONF (the engine)
    pin_file: Path

    def uri(self, obj: str, kind: str) -> str:
        return f"pkcs11:token={self.label};object={obj};type={kind}?pin-source=file:{self.pin_file}"

    def tool(self, *args) -> subprocess.CompletedProcess:
        return run("pkcs11-tool", "--module", SOFTHSM, "--token-label", self.label, "--login", "--pin", TOKEN_PIN,
                   *args, env=self.env, text=True)

    def keygen(self, label: str, key_id: str) -> None:
        self.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", label, "--id", key_id)

    def csr(self, label: str, work: Path, subject: str = "/CN=token-holder") -> Path:
        """A PKCS#10 signed on the token: openssl req through the PKCS#11 engine."""
        der, b64 = work / f"{label}.csr.der", work / f"{label}.csr.b64"
        run("openssl", "req", "-new", "-engine", "pkcs11", "-keyform", "engine", "-key",
            self.uri(label, "private"), "-subj", subject, "-outform", "DER", "-out", der, env=self.env)
        run("openssl", "base64", "-in", der, "-out", b64)
        return b64

    def curl_tls(self, label: str) -> list:
        """curl options for TLS client authentication with key and certificate on the token."""
        return ["--engine", "pkcs11", "--key-type", "ENG", "--key", self.uri(label, "private"),
                "--cert-type", "ENG", "--cert", self.uri(label, "cert")]


@pytest.fixture
def token(tmp_path) -> Token:
    if subprocess.run(["openssl", "engine", "pkcs11", "-t"], capture_output=True).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("OpenSSL's PKCS#11 engine is missing (apt-get install libengine-pkcs11-openssl)")
        pytest.skip("OpenSSL's PKCS#11 engine is missing (apt-get install libengine-pkcs11-openssl)")
    base = tmp_path / "enterprise-token"
    (base / "tokens").mkdir(parents=True)
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    ossl = base / "openssl.cnf"
    ossl.write_text(
        "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n"
        "[engine_section]\npkcs11 = pkcs11_section\n"
        f"[pkcs11_section]\nengine_id = pkcs11\nMODULE_PATH = {SOFTHSM}\ninit = 0\n"
        "[req]\ndistinguished_name = dn\n[dn]\n")
    pin = base / "pin"
    pin.write_text(TOKEN_PIN)
    pin.chmod(0o600)
    env = {"SOFTHSM2_CONF": str(conf), "OPENSSL_CONF": str(ossl)}
    run("softhsm2-util", "--init-token", "--free", "--label", "ent-usb", "--pin", TOKEN_PIN, "--so-pin", "13572468",
        env=env)
    return Token("ent-usb", env, pin)


# --- tests ---------------------------------------------------------------------------------------


def test_enroll_with_curl_and_openssl(site, tmp_path):
    """register -> code -> simpleenroll with curl + openssl (software key): the answer is a base64
    certs-only PKCS#7 openssl reads; the certificate carries the registry's subject and the
    CSR's key, and openssl verifies it against the chain from cacerts."""
    app_id, code = new_application(site, "张三")
    key, b64 = software_csr(tmp_path, "zs", "/CN=zhangsan")
    r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert r.status == 200, (r.status, r.body)
    assert r.headers["content-type"].startswith("application/pkcs7-mime"), r.headers
    assert r.headers.get("content-transfer-encoding") == "base64"
    (cert,) = certs_from_pkcs7(r.body, tmp_path, "issued")
    assert_registry_subject(cert, "张三")
    assert spki(cert) == spki(x509.load_pem_x509_csr(run("openssl", "req", "-in", tmp_path / "zs.csr.der",
                                                         "-inform", "DER").stdout))
    chain = curl(site, f"{EST}/cacerts", work=tmp_path)
    assert chain.status == 200
    certs_from_pkcs7(chain.body, tmp_path, "chain")
    v = run("openssl", "verify", "-CAfile", tmp_path / "chain.pem", tmp_path / "issued.pem", text=True)
    assert v.stdout.strip().endswith("OK"), v.stdout
    # the registry knows it: the certificate belongs to the enterprise, the application is enrolled
    serial = format(cert.serial_number, "x")
    rows = site.sql("SELECT c.enterprise_id, e.uscc FROM certificates c JOIN enterprises e "
                    "ON e.id = c.enterprise_id WHERE c.der = :d", d=cert.public_bytes(Encoding.DER))
    assert rows and rows[0][1] == USCC, serial
    assert site.sql("SELECT status FROM applications WHERE id = :i", i=app_id)[0][0] == "enrolled"


def test_enroll_and_reenroll_with_the_key_on_a_token(site, token, tmp_path):
    """The enterprise's USB key: key made on the token by pkcs11-tool, CSR signed there by openssl's
    PKCS#11 engine, simpleenroll with curl, certificate written onto the token by pkcs11-tool;
    then simplereenroll over mTLS with curl taking key AND certificate from the token through the
    engine, for a new key made on the token: same identity, the new key certified."""
    app_id, code = new_application(site, "李四")
    token.keygen("est", "01")
    b64 = token.csr("est", tmp_path, "/CN=li-si")
    r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path, env=token.env)
    assert r.status == 200, (r.status, r.body)
    (first,) = certs_from_pkcs7(r.body, tmp_path, "first")
    assert_registry_subject(first, "李四")
    der = tmp_path / "first.der"
    der.write_bytes(first.public_bytes(Encoding.DER))
    token.tool("--write-object", der, "--type", "cert", "--id", "01", "--label", "est")
    listed = token.tool("--list-objects", "--type", "cert").stdout
    assert "est" in listed and "ID:         01" in listed, listed

    token.keygen("est2", "02")  # a new key for the renewal (RFC 7030 4.2.2 allows and recommends it)
    b64 = token.csr("est2", tmp_path, "/CN=anything")
    r = curl(site, f"{EST}/simplereenroll", *token.curl_tls("est"), "-H", "Content-Type: application/pkcs10",
             "--data-binary", f"@{b64}", work=tmp_path, env=token.env)
    assert r.status == 200, (r.status, r.body)
    (second,) = certs_from_pkcs7(r.body, tmp_path, "second")
    assert second.subject == first.subject
    assert second.serial_number != first.serial_number
    pub = token.tool("--read-object", "--type", "pubkey", "--id", "02", "--output-file", tmp_path / "k2.der")
    assert pub.returncode == 0
    assert spki(second) == (tmp_path / "k2.der").read_bytes()
    chain = curl(site, f"{EST}/root/cacerts", work=tmp_path)
    certs_from_pkcs7(chain.body, tmp_path, "chain")
    run("openssl", "verify", "-CAfile", tmp_path / "chain.pem", tmp_path / "second.pem")

    # reenroll with no client certificate: 401 from the service, nothing issued
    before = count(site, "certificates")
    r = curl(site, f"{EST}/simplereenroll", "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{b64}",
             work=tmp_path)
    assert r.status == 401 and r.problem()["type"] == "urn:unica:problem:client-certificate-required"
    assert count(site, "certificates") == before


def test_wrong_code_then_locked_after_five_tries(site, tmp_path):
    """A wrong code: 401 with the Basic challenge (RFC 7030 3.2.3). After five wrong tries the
    application is locked: the right code is refused too, and nothing was issued."""
    app_id, code = new_application(site, "王五")
    _, b64 = software_csr(tmp_path, "ww")
    before = count(site, "certificates")
    for i in range(5):
        r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, f"wrong-{i}", b64), work=tmp_path)
        assert r.status == 401, (r.status, r.body)
        assert r.headers.get("www-authenticate", "").startswith("Basic "), r.headers
        assert r.problem()["type"] == "urn:unica:problem:code-invalid"
    r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert r.status == 401 and r.problem()["type"] == "urn:unica:problem:code-locked", (r.status, r.body)
    assert count(site, "certificates") == before
    assert site.sql("SELECT status FROM applications WHERE id = :i", i=app_id)[0][0] != "enrolled"
    audited = site.sql("SELECT details FROM audit_log WHERE event = 'enrollment.refused' AND target = :i "
                       "ORDER BY id", i=app_id)
    slugs = [json.loads(d)["slug"] if isinstance(d, str) else d["slug"] for (d,) in audited]
    assert slugs == ["code-invalid"] * 5 + ["code-locked"], slugs
    # no credentials at all; an unknown application answers like a wrong code
    r = curl(site, f"{EST}/simpleenroll", "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{b64}",
             work=tmp_path)
    assert r.status == 401 and r.headers.get("www-authenticate", "").startswith("Basic ")
    r = curl(site, f"{EST}/simpleenroll", *enroll_args("a000000000000", code, b64), work=tmp_path)
    assert r.status == 401 and r.problem()["type"] == "urn:unica:problem:code-invalid"


def test_credentials_and_labels(site, tmp_path):
    """Authorization that is not Basic user:password is a 401 with the challenge; the right
    credentials at another CA's label answer like a wrong code (an application cannot be probed
    through labels), at an unknown label 404, at the application's own label they enroll."""
    app_id, code = new_application(site, "郑十一")
    _, b64 = software_csr(tmp_path, "zsy")
    body = ["-H", "Content-Type: application/pkcs10", "--data-binary", f"@{b64}"]
    for auth in ("Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                 "Basic " + base64.b64encode(f"{app_id}:".encode()).decode()):
        r = curl(site, f"{EST}/simpleenroll", "-H", f"Authorization: {auth}", *body, work=tmp_path)
        assert r.status == 401 and r.headers.get("www-authenticate", "").startswith("Basic "), (auth, r.status)
    site.ok("ca", "create-root", "other", "--subject", "C=CN,O=Port Joint CA,CN=Other Root", "--key-type", "ec-p256",
            "--token", site.hsm, who="alice")
    r = curl(site, f"{EST}/other/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert r.status == 401 and r.problem()["type"] == "urn:unica:problem:code-invalid", (r.status, r.body)
    r = curl(site, f"{EST}/nosuchca/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert r.status in (401, 404), (r.status, r.body)
    r = curl(site, f"{EST}/root/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert r.status == 200, (r.status, r.body)
    # the unlabelled paths still speak for the offices' CA, though there are two CAs now
    (ca,) = certs_from_pkcs7(curl(site, f"{EST}/cacerts", work=tmp_path).body, tmp_path, "cacerts")
    assert ca.subject.rfc4514_string() == "CN=Port Root,O=Port Joint CA,C=CN"


def test_reenroll_needs_an_enterprise_certificate(site, tmp_path):
    """A valid certificate of this CA that was not issued to an enterprise (an operator's) does not
    re-enroll: 403, nothing issued."""
    op = site.client_cert("Somebody")
    _, b64 = software_csr(tmp_path, "sb")
    before = count(site, "certificates")
    r = curl(site, f"{EST}/simplereenroll", "--cert", op.cert, "--key", op.key,
             "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{b64}", work=tmp_path)
    assert r.status == 403 and r.problem()["type"] == "urn:unica:problem:not-enterprise", (r.status, r.body)
    assert count(site, "certificates") == before


def test_a_code_is_used_once(site, tmp_path):
    """The code is consumed by the enrollment that issued: the same code for another key is
    refused and issues nothing; the same request again (an answer lost on the way) gets the
    certificate already issued, and issues nothing."""
    app_id, code = new_application(site, "赵六")
    _, b64 = software_csr(tmp_path, "zl")
    first = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert first.status == 200
    before = count(site, "certificates")
    again = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert again.status == 200, (again.status, again.body)
    assert certs_from_pkcs7(again.body, tmp_path, "again") == certs_from_pkcs7(first.body, tmp_path, "first")
    assert count(site, "certificates") == before
    _, b64 = software_csr(tmp_path, "zl2")
    r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert r.status == 401 and r.problem()["type"] == "urn:unica:problem:code-used", (r.status, r.body)
    assert count(site, "certificates") == before


def test_a_retried_enrollment_with_an_idempotency_key_replays(site, tmp_path):
    """A client that lost the answer retries with the same Idempotency-Key and body: it gets the
    same certificate back, not a refusal of the used code, and nothing more is issued."""
    app_id, code = new_application(site, "冯十二")
    _, b64 = software_csr(tmp_path, "fse")
    key = ["-H", "Idempotency-Key: est-retry-8f2c1a"]
    first = curl(site, f"{EST}/simpleenroll", *key, *enroll_args(app_id, code, b64), work=tmp_path)
    assert first.status == 200, (first.status, first.body)
    before = count(site, "certificates")
    again = curl(site, f"{EST}/simpleenroll", *key, *enroll_args(app_id, code, b64), work=tmp_path)
    assert again.status == 200 and again.body == first.body, (again.status, again.body)
    assert again.headers.get("idempotent-replayed") == "true", again.headers
    assert count(site, "certificates") == before


def test_the_registry_decides_the_identity(site, tmp_path):
    """A CSR asking for another enterprise and another holder gets the registry's subject."""
    app_id, code = new_application(site, "钱七")
    _, b64 = software_csr(tmp_path, "other",
                          f"/C=US/O=Other Corp/organizationIdentifier={OTHER_USCC}/CN=Mallory")
    r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert r.status == 200, (r.status, r.body)
    (cert,) = certs_from_pkcs7(r.body, tmp_path, "issued")
    assert_registry_subject(cert, "钱七")
    assert "Mallory" not in cert.subject.rfc4514_string() and OTHER_USCC not in cert.subject.rfc4514_string()


def test_reenroll_with_a_revoked_certificate_is_refused(site, tmp_path):
    """simplereenroll over mTLS (curl with a software key, at the CA's label) works with a valid
    certificate; once the officer revoked it, the same client is refused (403, audited) and nothing
    is issued."""
    app_id, code = new_application(site, "孙八")
    key, b64 = software_csr(tmp_path, "sb")
    r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert r.status == 200, r.body
    (cert,) = certs_from_pkcs7(r.body, tmp_path, "current")
    tls = ["--cert", tmp_path / "current.pem", "--key", key]
    _, b64 = software_csr(tmp_path, "sb2")
    r = curl(site, f"{EST}/root/simplereenroll", *tls, "-H", "Content-Type: application/pkcs10",
             "--data-binary", f"@{b64}", work=tmp_path)
    assert r.status == 200, (r.status, r.body)
    site.ok("cert", "revoke", format(cert.serial_number, "X"), "--ca", "root", "--reason", "superseded", who="bob")
    before = count(site, "certificates")
    refusals = site.sql("SELECT count(*) FROM audit_log WHERE event = 'service.client_refused'")[0][0]
    r = curl(site, f"{EST}/simplereenroll", *tls, "-H", "Content-Type: application/pkcs10",
             "--data-binary", f"@{b64}", work=tmp_path)
    assert r.status == 403, (r.status, r.body)
    assert "revoked" in r.problem().get("detail", "")
    assert count(site, "certificates") == before
    assert site.sql("SELECT count(*) FROM audit_log WHERE event = 'service.client_refused'")[0][0] == refusals + 1


def test_malformed_requests(site, tmp_path):
    """Not base64, base64 of something else than a PKCS#10, an empty body: 400 problems; a request
    whose signature does not verify: 403; a body that is not application/pkcs10: 415. None of
    them costs the code a try, each is audited, and the code still enrolls afterwards."""
    app_id, code = new_application(site, "周九")
    bad = tmp_path / "bad.b64"
    for content in (b"%%% not base64 %%%\n", base64.encodebytes(b"\x30\x03\x02\x01\x00"), b""):
        bad.write_bytes(content)
        r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, bad), work=tmp_path)
        assert r.status == 400, (content, r.status, r.body)
        assert r.problem()["type"] == "urn:unica:problem:malformed"
    _, b64 = software_csr(tmp_path, "zj")
    forged = bytearray((tmp_path / "zj.csr.der").read_bytes())
    forged[-1] ^= 0x01  # the last byte of the signature: still DER, no longer a proof of possession
    bad.write_bytes(base64.encodebytes(bytes(forged)))
    r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, bad), work=tmp_path)
    assert r.status == 403 and r.problem()["type"] == "urn:unica:problem:policy", (r.status, r.body)
    r = curl(site, f"{EST}/simpleenroll", "--user", f"{app_id}:{code}", "-H", "Content-Type: text/plain",
             "--data-binary", f"@{b64}", work=tmp_path)
    assert r.status == 415, (r.status, r.body)
    assert site.sql("SELECT code_failures FROM applications WHERE id = :i", i=app_id)[0][0] == 0
    refused = site.sql("SELECT details FROM audit_log WHERE event = 'est.refused' AND target = :i", i=app_id)
    assert len(refused) == 5, refused
    r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert r.status == 200, (r.status, r.body)


def test_an_application_awaiting_approval_answers_202(site, tmp_path):
    """A self-service application (REST, no certificate yet) waits for its office: EST answers
    202 with Retry-After (RFC 7030 4.2.3) whatever the code, and issues nothing. Once the
    officer approved it, the status poll releases the code and the same request enrolls."""
    form = {"uscc": USCC, "name": NAME, "office": "customs", "profile": "enterprise-sign", "holder": "吴十"}
    r = curl(site, "/api/v1/applications/self-service", "-H", "Content-Type: application/json",
             "--data-binary", json.dumps(form, ensure_ascii=False), work=tmp_path)
    assert r.status == 201, (r.status, r.body)
    created = json.loads(r.body)
    app_id, token = created["id"], created["status_token"]
    _, b64 = software_csr(tmp_path, "ws")
    before = count(site, "certificates")
    r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, "no-code-yet", b64), work=tmp_path)
    assert r.status == 202, (r.status, r.body)
    assert r.headers.get("retry-after", "").isdigit(), r.headers
    assert r.problem()["type"] == "urn:unica:problem:not-approved"
    assert count(site, "certificates") == before
    site.ok("application", "approve", app_id, "--reason", "documents checked", who="bob")
    r = curl(site, f"/api/v1/applications/{app_id}/status", "-H", f"Authorization: Bearer {token}", work=tmp_path)
    assert r.status == 200, (r.status, r.body)
    code = json.loads(r.body)["code"]
    r = curl(site, f"{EST}/simpleenroll", *enroll_args(app_id, code, b64), work=tmp_path)
    assert r.status == 200, (r.status, r.body)
    (cert,) = certs_from_pkcs7(r.body, tmp_path, "issued")
    assert_registry_subject(cert, "吴十")


def test_cacerts_wire_format(site, tmp_path):
    """cacerts: base64 certs-only PKCS#7 (application/pkcs7-mime, Content-Transfer-Encoding base64)
    holding exactly the CA's chain, the same with the CA's label; an unknown label 404."""
    exported = site.ok("ca", "export", "root").stdout.encode()
    want = x509.load_pem_x509_certificates(exported)
    for path in (f"{EST}/cacerts", f"{EST}/root/cacerts"):
        r = curl(site, path, work=tmp_path)
        assert r.status == 200
        assert r.headers["content-type"].split(";")[0] == "application/pkcs7-mime"
        assert r.headers["content-transfer-encoding"] == "base64"
        assert certs_from_pkcs7(r.body, tmp_path, "cacerts") == want
    assert curl(site, f"{EST}/nosuchca/cacerts", work=tmp_path).status == 404


def test_csrattrs_wire_format(site, tmp_path):
    """csrattrs: base64 DER CsrAttrs (application/csrattrs) that openssl asn1parse reads: the
    enterprise-sign profile's key algorithms (id-ecPublicKey with P-256 and P-384, rsaEncryption)."""
    r = curl(site, f"{EST}/csrattrs", work=tmp_path)
    assert r.status == 200, (r.status, r.body)
    assert r.headers["content-type"].split(";")[0] == "application/csrattrs"
    assert r.headers.get("content-transfer-encoding") == "base64"
    der = tmp_path / "attrs.der"
    der.write_bytes(base64.b64decode(r.body))
    text = run("openssl", "asn1parse", "-inform", "DER", "-in", der, text=True).stdout
    for name in ("id-ecPublicKey", "prime256v1", "secp384r1", "rsaEncryption", "ecdsa-with-SHA256"):
        assert name in text, text
    assert curl(site, f"{EST}/root/csrattrs", work=tmp_path).body == r.body


# --- the integrator's guide, run as written ------------------------------------------------------

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "est-guide.md"


def test_the_guide_runs(site, tmp_path):
    """docs/est-guide.md, every block in order in one bash, against this service: the host name
    of the page is the test's 127.0.0.1 and port; the RA office's part (root.pem, an application
    id and code per section that enrolls, the token initialised, its PIN) is done by the test."""
    from tests.docs.test_examples import parse_page

    work = tmp_path / "guide"
    work.mkdir()
    (work / "root.pem").write_bytes(site.ok("ca", "export", "root").stdout.encode())
    tokens = tmp_path / "guide-tokens"
    tokens.mkdir()
    conf = tmp_path / "guide-softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(conf), "TOKEN_PIN": TOKEN_PIN}
    run("softhsm2-util", "--init-token", "--free", "--label", "acme-usb", "--pin", TOKEN_PIN, "--so-pin",
        "13572468", env=env)
    lines = GUIDE.read_text(encoding="utf-8").split("\n")
    headings = [(i + 1, line[3:]) for i, line in enumerate(lines) if line.startswith("## ")]

    def section(line: int) -> str:
        name = max(((n, h) for n, h in headings if n < line), default=(0, ""))[1]
        return on_token if name.startswith(on_token) else name

    software, on_token = "3. Enroll with a key in a file (`simpleenroll`)", "4. Enroll with the key on a token"
    apps = {software: new_application(site, "张三"), on_token: new_application(site, "李四")}
    host = site.url.split("//", 1)[1].rstrip("/")
    script = ["set -u", '__check() { if [ "$1" != "$2" ]; then echo "GUIDE FAILED at $3: exit $1, not $2" >&2; '
                        'exit 97; fi; }']
    seen = set()
    blocks = parse_page(GUIDE)
    assert blocks and all(b.lang == "console" for b in blocks)
    for b in blocks:
        name = section(b.line)
        if name in apps and name not in seen:
            seen.add(name)
            app_id, code = apps[name]
            script.append(f"export APP_ID={app_id} EST_CODE={code}")
        if name.startswith("When something goes wrong"):
            script.append("export APP_ID={} EST_CODE={}".format(*apps[software]))  # its code is used up
        for c in b.commands:
            text = c.text.replace("ca.example.cn:8443", host).replace("ca.example.cn", host.split(":")[0])
            script.append(f"echo '>>> est-guide.md:{c.line}' >&2")
            script.append(text)
            script.append(f"__check $? {c.expect} est-guide.md:{c.line}")
    assert seen == set(apps)
    p = subprocess.run(["bash", "-c", "\n".join(script) + "\n"], cwd=work, env={**os.environ, **env},
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout[-3000:] + "\n--- stderr\n" + p.stderr[-5000:]
    renewed = x509.load_pem_x509_certificate((work / "renew.pem").read_bytes())
    assert_registry_subject(renewed, "李四")
    assert_registry_subject(x509.load_pem_x509_certificate((work / "zhangsan.pem").read_bytes()), "张三")
    assert json.loads((work / "refused.json").read_text())["type"] == "urn:unica:problem:code-used"


# --- two service processes on one PostgreSQL -----------------------------------------------------


@pytest.fixture
def pg_services(tmp_path, pg_url):
    """Two ``unica serve`` processes on one PostgreSQL database (the CA built afresh there)."""
    from tests.auth.conftest import bootstrap, build_joint_ca, fresh_pg_database
    from tests.service.conftest import _add_tls_files, start_service

    j = bootstrap(_add_tls_files(build_joint_ca(tmp_path / "pg", db=fresh_pg_database(pg_url), cards=("alice", "bob"))))
    a = start_service(j)
    try:
        b = start_service(j)
    except BaseException:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def test_one_code_issues_once_across_two_processes_on_postgresql(pg_services, tmp_path):
    """The same code sent at the same time to two service processes on one PostgreSQL, each with
    its own key: one enrollment issues, the other is refused (code-used), and one certificate
    exists for the application; what one process issued, the other re-enrolls.

    Two keys, not one: the same request again after the first completed is a replay, answered
    with the same certificate (200, nothing issued: tests/ra), so with one key the outcome
    depended on which process got there first."""
    a, b = pg_services
    for i, holder in enumerate(("陈一", "陈二", "陈三")):
        app_id, code = new_application(a, holder)
        csrs = [software_csr(tmp_path, f"race{i}-{n}")[1] for n in (0, 1)]
        started = [curl_start(s, f"{EST}/simpleenroll", *enroll_args(app_id, code, csrs[n]), work=tmp_path,
                              tag=f"race{i}-{n}") for n, s in enumerate((a, b))]
        replies = [curl_reply(x) for x in started]
        assert sorted(r.status for r in replies) == [200, 401], [(r.status, r.body) for r in replies]
        loser = next(r for r in replies if r.status == 401)
        assert loser.problem()["type"] == "urn:unica:problem:code-used"
        rows = a.sql("SELECT count(*) FROM certificates c JOIN applications p ON p.certificate_id = c.id "
                     "WHERE p.id = :i", i=app_id)
        assert rows[0][0] == 1
        assert a.sql("SELECT count(*) FROM certificates WHERE requester = :r", r=f"application {app_id}")[0][0] == 1
    won = next(n for n, r in enumerate(replies) if r.status == 200)
    certs_from_pkcs7(replies[won].body, tmp_path, "current")
    _, b64 = software_csr(tmp_path, "renew")
    for s in (a, b):
        r = curl(s, f"{EST}/simplereenroll", "--cert", tmp_path / "current.pem", "--key", tmp_path / f"race2-{won}.key",
                 "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{b64}", work=tmp_path)
        assert r.status == 200, (r.status, r.body)
