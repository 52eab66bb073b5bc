"""Every flow of the service in one journey, on SQLite (one ``unica serve``) and on PostgreSQL
(two ``unica serve`` processes on one database, the requests spread over both):

1. an RA officer (mTLS, operator certificate) registers an enterprise and creates an
   application -> the one-time code;
2. the enterprise enrolls over EST with the key on its SoftHSM2 token (curl + OpenSSL's PKCS#11
   engine), and writes the certificate onto the token;
3. it re-enrolls over mTLS with the token key, for a new key on the token;
4. it asks for the revocation of the first certificate (keyCompromise, mTLS with the token key)
   -> ``openssl ocsp`` against unica's responder says revoked;
5. a second enterprise applies online (self-service) under a two-officer rule; two officers
   approve, one on each process; the status poll gives the code once; it enrolls over EST.

The pieces have their own tests (tests/service/test_est.py, test_api.py); this one checks that
they hold together, on both databases, and across processes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.service.conftest import ClientCert, OCSPResponder, copy_service_ca, start_service
from tests.service.test_est import (EST, NAME, USCC, assert_registry_subject, certs_from_pkcs7, curl,
                                    enroll_args, software_csr, token)  # noqa: F401 (token: a fixture)
from unica.policies.uscc import check_char

SECOND_USCC = "91110000MA01" + "ABCDE"
SECOND_USCC += check_char(SECOND_USCC)


@pytest.fixture(params=["sqlite", "postgresql"])
def services(request, tmp_path, _service_template):
    """SQLite: one process. PostgreSQL: the service CA built afresh in a new database, two processes."""
    if request.param == "sqlite":
        procs = [start_service(copy_service_ca(_service_template, tmp_path / "ca"))]
    else:
        from tests.auth.conftest import bootstrap, build_joint_ca, fresh_pg_database
        from tests.service.conftest import _add_tls_files

        url = fresh_pg_database(request.getfixturevalue("pg_url"))
        j = bootstrap(_add_tls_files(build_joint_ca(tmp_path / "pg", db=url, cards=("alice", "bob"))))
        procs = [start_service(j)]
        try:
            procs.append(start_service(j))
        except BaseException:
            procs[0].stop()
            raise
    yield procs
    for p in procs:
        p.stop()


def officer(site, name: str) -> ClientCert:
    """An RA officer of ``customs`` with a software key (Python's ssl cannot reach a card)."""
    cert = site.client_cert(name.title())
    site.add_operator(name, cert, "--role", "ra-officer", "--office", "customs")
    return cert


def api(site, who: ClientCert | None, method: str, path: str, body=None, **kw):
    r = site.request(method, "/api/v1" + path, body, cert=who, **kw)
    assert r.status in (200, 201, 202), (method, path, r.status, r.body)
    return r.json


def ocsp_status(ocsp: OCSPResponder, cert: Path) -> str:
    out = ocsp.ask(cert)
    assert "Response verify OK" in out, out
    return out


def test_every_flow_end_to_end(services, token, tmp_path):  # noqa: F811 (token is the fixture)
    a, b = services[0], services[-1]  # on SQLite the same process
    frank, grace = officer(a, "frank"), officer(a, "grace")

    # 1. registration by an officer over mTLS; the code is shown once
    api(a, frank, "POST", "/enterprises", {"uscc": USCC, "name": NAME, "office": "customs", "legal_rep": "王五"})
    created = api(b, frank, "POST", "/applications", {"uscc": USCC, "profile": "enterprise-sign", "holder": "张三",
                                                      "ca": "root"})
    assert created["status"] == "approved" and created["code"], created
    assert api(a, frank, "GET", f"/applications/{created['id']}").get("code") is None  # shown once

    # 2. EST enrollment with the key on the enterprise's token; the certificate onto the token
    token.keygen("sign", "01")
    b64 = token.csr("sign", tmp_path, "/CN=someone else/O=Another Company")
    r = curl(a, f"{EST}/simpleenroll", *enroll_args(created["id"], created["code"], b64), work=tmp_path, env=token.env)
    assert r.status == 200, (r.status, r.body)
    (first,) = certs_from_pkcs7(r.body, tmp_path, "first")
    assert_registry_subject(first, "张三")
    (tmp_path / "first.der").write_bytes(first.public_bytes(Encoding.DER))
    token.tool("--write-object", tmp_path / "first.der", "--type", "cert", "--id", "01", "--label", "sign")
    # the same request again (a lost answer), on the other process: the same certificate, nothing issued;
    # the code for another key: used up
    again = curl(b, f"{EST}/simpleenroll", *enroll_args(created["id"], created["code"], b64), work=tmp_path,
                 env=token.env)
    assert again.status == 200 and certs_from_pkcs7(again.body, tmp_path, "again") == [first]
    _, other = software_csr(tmp_path, "other-key")
    used = curl(b, f"{EST}/simpleenroll", *enroll_args(created["id"], created["code"], other), work=tmp_path)
    assert used.status == 401 and used.problem()["type"] == "urn:unica:problem:code-used"

    # 3. re-enrollment over mTLS with the token key (key and certificate read from the token)
    token.keygen("sign2", "02")
    b64 = token.csr("sign2", tmp_path, "/CN=renewal")
    r = curl(b, f"{EST}/simplereenroll", *token.curl_tls("sign"), "-H", "Content-Type: application/pkcs10",
             "--data-binary", f"@{b64}", work=tmp_path, env=token.env)
    assert r.status == 200, (r.status, r.body)
    (second,) = certs_from_pkcs7(r.body, tmp_path, "second")
    assert second.subject == first.subject and second.serial_number != first.serial_number

    # 4. revocation request (keyCompromise: at once) over mTLS with the token key; OCSP says revoked
    a.ok("ocsp", "configure", "--ca", "root", "--mode", "live", who="alice")
    a.ok("ocsp", "signer", "--ca", "root", "--token", a.joint.hsm, who="alice")
    ocsp = OCSPResponder(a.env, tmp_path, a.ca_pem)
    try:
        assert ": good" in ocsp_status(ocsp, tmp_path / "first.pem")
        body = json.dumps({"serial": format(first.serial_number, "x"), "reason": "keyCompromise"})
        r = curl(a, "/api/v1/me/revocation-requests", *token.curl_tls("sign"), "-H",
                 "Content-Type: application/json", "-H", "Idempotency-Key: journey-revoke-1", "--data-binary", body,
                 work=tmp_path, env=token.env)
        assert r.status in (200, 201), (r.status, r.body)
        assert json.loads(r.body)["status"] == "done"
        out = ocsp_status(ocsp, tmp_path / "first.pem")
        assert ": revoked" in out and "Reason: keyCompromise" in out, out
        assert ": good" in ocsp_status(ocsp, tmp_path / "second.pem")
    finally:
        ocsp.stop()
    # the retry with the same Idempotency-Key, on the other process, answers the first result
    r2 = curl(b, "/api/v1/me/revocation-requests", *token.curl_tls("sign"), "-H",
              "Content-Type: application/json", "-H", "Idempotency-Key: journey-revoke-1", "--data-binary", body,
              work=tmp_path, env=token.env)
    assert (r2.status, json.loads(r2.body)) == (r.status, json.loads(r.body))

    # 5. self-service application under a two-officer rule, decided on both processes
    a.ok("approval-rule", "set", "cert.issue:enterprise-sign", "--approvals", "2", who="alice")
    key, b64 = software_csr(tmp_path, "second-ent", "/CN=applicant")
    submitted = api(b, None, "POST", "/applications/self-service",
                    {"uscc": SECOND_USCC, "name": "第二贸易有限公司", "office": "customs", "profile": "enterprise-sign",
                     "holder": "赵六", "contact": "zhao@example.cn"})
    poll = {"Authorization": f"Bearer {submitted['status_token']}"}
    assert api(a, None, "GET", f"/applications/{submitted['id']}/status", headers=poll)["status"] == "submitted"
    first_decision = api(a, frank, "POST", f"/applications/{submitted['id']}/decision", {"approve": True,
                                                                                       "reason": "documents checked"})
    assert first_decision["status"] == "submitted", first_decision
    api(b, grace, "POST", f"/applications/{submitted['id']}/decision", {"approve": True, "reason": "second check"})
    released = api(a, None, "GET", f"/applications/{submitted['id']}/status", headers=poll)
    assert released["status"] == "approved" and released["code"], released
    assert api(b, None, "GET", f"/applications/{submitted['id']}/status", headers=poll).get("code") is None
    r = curl(b, f"{EST}/simpleenroll", *enroll_args(submitted["id"], released["code"], b64), work=tmp_path)
    assert r.status == 200, (r.status, r.body)
    (third,) = certs_from_pkcs7(r.body, tmp_path, "third")
    assert_registry_subject(third, "赵六", uscc=SECOND_USCC, name="第二贸易有限公司")

    # the database agrees, whichever process did what
    rows = a.sql("SELECT c.serial, c.status, e.uscc FROM certificates c JOIN enterprises e ON e.id = c.enterprise_id "
                 "ORDER BY c.id")
    assert [(s, st, u) for s, st, u in rows] == [
        (format(first.serial_number, "x"), "revoked", USCC), (format(second.serial_number, "x"), "valid", USCC),
        (format(third.serial_number, "x"), "valid", SECOND_USCC)], rows
    assert x509.load_pem_x509_certificate((tmp_path / "second.pem").read_bytes()).serial_number == second.serial_number
