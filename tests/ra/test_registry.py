"""The registry library (unica.ra) in-process, on a joint CA whose operators sign with SoftHSM2 cards.

The tests that need no approval rule come first; the dual-control ones add carol as a second
officer of customs and the rule cert.issue:enterprise-sign = 2 (module order matters)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from tests.ra.conftest import csr_der, uscc
from unica import ra
from unica.auth import OperatorSigner, TLSClient
from unica.errors import InputError, NotAuthorized, PolicyViolation
from unica.store import models as m

CODE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){5}$")


def card(j, who):
    return OperatorSigner(j.card(who))


def _count(store, model, *where) -> int:
    with store.read() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _snapshot(store) -> dict:
    """Every registry row and every certificate row, as plain tuples (the audit log aside)."""
    out = {}
    with store.read() as s:
        for model in (m.Enterprise, m.Application, m.ApplicationApproval, m.RevocationRequest, m.Certificate):
            cols = [c.name for c in model.__table__.columns]
            out[model.__tablename__] = sorted(tuple(str(getattr(r, c)) for c in cols) for r in s.scalars(select(model)))
    return out


def _audits(store, event) -> list[m.AuditEntry]:
    with store.read() as s:
        return list(s.scalars(select(m.AuditEntry).where(m.AuditEntry.event == event).order_by(m.AuditEntry.id)))


_n = iter(range(10_000))


def _enterprise(store, j, who="bob", name="示例科技有限公司", office="customs") -> str:
    code = uscc(f"91350100M{next(_n):07d}4")
    ra.add_enterprise(store, uscc=code, name=name, office=office, legal_rep="李四", auth=card(j, who))
    return code


def test_enterprises_are_registered_by_their_office(reg):
    j, store, _ = reg
    code = _enterprise(store, j)
    e = ra.get_enterprise(store, code)
    assert (e["name"], e["office"], e["legal_rep"], e["status"]) == ("示例科技有限公司", "customs", "李四", "active")
    assert [x["uscc"] for x in ra.list_enterprises(store, office="customs", query="示例")] == [code]
    with pytest.raises(ra.RegistryConflict, match="registered already"):
        ra.add_enterprise(store, uscc=code, name="Other", office="customs", auth=card(j, "bob"))
    entry = _audits(store, "enterprise.refused")[-1]
    assert (entry.details["office"], entry.details["operator"]["name"], entry.actor.split()[0]) == (
        "customs", "bob", "bob")
    # over the service: the officer's TLS client certificate, named by its SHA-256
    bob_der = x509.load_pem_x509_certificate(j.certs["bob"].read_bytes()).public_bytes(Encoding.DER)
    with pytest.raises(ra.RegistryConflict):
        ra.add_enterprise(store, uscc=code, name="Other", office="customs", auth=TLSClient(bob_der))
    assert _audits(store, "enterprise.refused")[-1].details["client"] == hashlib.sha256(bob_der).hexdigest()
    bad = code[:17] + ("0" if code[17] != "0" else "1")
    with pytest.raises(InputError, match="check character"):
        ra.add_enterprise(store, uscc=bad, name="X", office="customs", auth=card(j, "bob"))
    # another office: bob may not; alice, an admin, may
    j.ok("office", "add", "port", "--ca", "root", "--profile", "enterprise-sign", who="alice")
    other = uscc("91310000MA1K00001")
    before = _count(store, m.Enterprise)
    with pytest.raises(NotAuthorized, match="office customs"):
        ra.add_enterprise(store, uscc=other, name="Port Co", office="port", auth=card(j, "bob"))
    assert _count(store, m.Enterprise) == before
    assert "office port" in _audits(store, "auth.refused")[-1].details["reason"]
    by_admin = ra.add_enterprise(store, uscc=other, name="Port Co", office="port", auth=card(j, "alice"))
    assert by_admin["office"] == "port"
    with pytest.raises(NotAuthorized):  # no card: once operators exist, somebody must act
        ra.add_enterprise(store, uscc=uscc("91310000MA1K00002"), name="X", office="customs")


def test_an_application_gives_a_code_once_and_the_identity_comes_from_the_registry(reg):
    j, store, issuer = reg
    code_e = _enterprise(store, j, name="厦门示例贸易有限公司")
    app = ra.create_application(store, uscc=code_e, profile="enterprise-sign", holder="张三", auth=card(j, "bob"))
    assert app["status"] == "approved" and app["needed"] == 1 and app["approvals"] == 1
    code = app["code"]
    assert CODE.match(code), code  # 24 characters of Crockford base32: 120 bits
    assert "code" not in ra.get_application(store, app["id"])
    # nothing stores the code: only a salted hash (HMAC-SHA-256 keyed with the salt)
    with store.read() as s:
        row = s.get(m.Application, app["id"])
        assert row.code_hash.startswith("hmac-sha256$") and len(row.code_salt) == 32
        stored = [str(getattr(row, c.name)) for c in m.Application.__table__.columns]
        audit = [str(a.details) for a in s.scalars(select(m.AuditEntry))]
    flat = code.replace("-", "")
    assert not any(code in v or flat in v for v in stored + audit)
    der, key = csr_der()
    issued = ra.enroll(store, app["id"], code.lower().replace("-", " "), der, issuer=issuer, client="test 127.0.0.1")
    cert = x509.load_der_x509_certificate(issued.der)
    want = {NameOID.COUNTRY_NAME: "CN", NameOID.ORGANIZATION_NAME: "厦门示例贸易有限公司",
            NameOID.ORGANIZATION_IDENTIFIER: code_e, NameOID.COMMON_NAME: "张三"}
    assert {a.oid: a.value for a in cert.subject} == want  # the CSR said US / Other Corp / Mallory
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    with store.read() as s:
        row = s.scalars(select(m.Certificate).where(m.Certificate.serial == issued.serial_hex)).one()
        ent = s.scalars(select(m.Enterprise).where(m.Enterprise.uscc == code_e)).one()
        assert (row.enterprise_id, row.office, row.status) == (ent.id, "customs", "valid")
        a = s.get(m.Application, app["id"])
        assert (a.status, a.certificate_id) == ("enrolled", row.id)
    issued_entry = [e for e in _audits(store, "certificate.issued") if e.target == issued.serial_hex][0]
    assert issued_entry.details["operator"]["name"] == "bob"
    assert issued_entry.details["approval_request"] == app["id"]
    assert [x["name"] for x in issued_entry.details["approvers"]] == ["bob"]
    assert ra.enterprise_of_certificate(store, issued.der)["uscc"] == code_e
    assert [c["serial"] for c in ra.enterprise_certificates(store, code_e)] == [issued.serial_hex]
    # the code is spent: a second enrollment is refused and changes nothing
    before = _snapshot(store)
    with pytest.raises(ra.EnrollmentRefused) as e:
        ra.enroll(store, app["id"], code, csr_der()[0], issuer=issuer, client="test 127.0.0.2")
    assert e.value.slug == "code-used"
    assert _snapshot(store) == before
    refusal = _audits(store, "enrollment.refused")[-1]
    assert (refusal.details["office"], refusal.details["client"], refusal.details["slug"]) == (
        "customs", "test 127.0.0.2", "code-used")


def test_wrong_codes_count_and_lock_the_application_after_five(reg):
    j, store, issuer = reg
    app = ra.create_application(store, uscc=_enterprise(store, j), profile="enterprise-sign", holder="王五",
                                auth=card(j, "bob"))
    wrong = "0000-0000-0000-0000-0000-0000"
    der = csr_der()[0]
    certs = _count(store, m.Certificate)
    for i in range(1, 6):
        with pytest.raises(ra.EnrollmentRefused) as e:
            ra.enroll(store, app["id"], wrong if i % 2 else "not a code at all", der, issuer=issuer, client="c")
        assert e.value.slug == "code-invalid"
        assert ra.get_application(store, app["id"])["code_failures"] == i
    with pytest.raises(ra.EnrollmentRefused) as e:  # the right code, too late
        ra.enroll(store, app["id"], app["code"], der, issuer=issuer, client="c")
    assert e.value.slug == "code-locked"
    assert _count(store, m.Certificate) == certs
    assert ra.get_application(store, app["id"])["status"] == "approved"
    assert _audits(store, "enrollment.refused")[-2].details.get("locked") is True
    with pytest.raises(ra.EnrollmentRefused) as e:  # an unknown application looks like a wrong code
        ra.enroll(store, "a000000000000", app["code"], der, issuer=issuer, client="c")
    assert e.value.slug == "no-such-application" and "enrollment code is wrong" in str(e.value)


def test_an_expired_code_is_refused(reg):
    j, store, issuer = reg
    app = ra.create_application(store, uscc=_enterprise(store, j), profile="enterprise-sign", holder="赵六",
                                lifetime=dt.timedelta(minutes=5), auth=card(j, "bob"))
    exp = ra.get_application(store, app["id"])["code_expires_at"]
    assert dt.timedelta(minutes=4) < exp - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(minutes=5)
    j.sql("UPDATE applications SET code_expires_at = :t WHERE id = :i",
          t=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=1), i=app["id"])
    assert ra.get_application(store, app["id"])["status"] == "expired"
    with pytest.raises(ra.EnrollmentRefused) as e:
        ra.enroll(store, app["id"], app["code"], csr_der()[0], issuer=issuer, client="c")
    assert e.value.slug == "code-expired"
    assert ra.get_application(store, app["id"])["code_failures"] == 0


def test_a_failed_issuance_does_not_consume_the_code(reg):
    """A CSR the profile refuses (an Ed25519 key: enterprise-sign takes EC and RSA) leaves the
    application approved and the code usable; the next, good CSR enrolls."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    j, store, issuer = reg
    app = ra.create_application(store, uscc=_enterprise(store, j), profile="enterprise-sign", holder="孙七",
                                auth=card(j, "bob"))
    before = _snapshot(store)
    with pytest.raises(PolicyViolation):
        ra.enroll(store, app["id"], app["code"], csr_der(key=ed25519.Ed25519PrivateKey.generate())[0], issuer=issuer,
                  client="c")
    assert _snapshot(store) == before
    assert _audits(store, "enrollment.refused")[-1].details["stage"] == "issuance"
    assert ra.enroll(store, app["id"], app["code"], csr_der()[0], issuer=issuer, client="c").serial_hex


def test_two_enrollments_with_one_code_issue_one_certificate(reg):
    j, store, issuer = reg
    app = ra.create_application(store, uscc=_enterprise(store, j), profile="enterprise-sign", holder="周八",
                                auth=card(j, "bob"))
    csrs = [csr_der()[0] for _ in range(4)]
    start = threading.Barrier(len(csrs))
    results: list = [None] * len(csrs)

    def run(i):
        start.wait()
        try:
            results[i] = ra.enroll(store, app["id"], app["code"], csrs[i], issuer=issuer, client=f"client {i}")
        except ra.EnrollmentRefused as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(csrs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    issued = [r for r in results if not isinstance(r, Exception)]
    assert len(issued) == 1, results
    assert all(r.slug == "code-used" for r in results if isinstance(r, Exception))
    assert _count(store, m.Certificate, m.Certificate.requester == f"application {app['id']}") == 1


def test_a_claim_left_by_a_killed_process_is_resolved_and_a_lost_answer_replayed(reg):
    """A process killed after recording its intent (and the claim, one transaction): the code
    waits while the intent is pending, and works again once 'unica recover' rolled it back. A
    completed enrollment uses the code up for any other key; the same code with the same key gets
    the certificate issued (nothing issued), also when it was stored but not linked (the process
    died before handing it out: linked at the next use)."""
    j, store, issuer = reg
    app = ra.create_application(store, uscc=_enterprise(store, j), profile="enterprise-sign", holder="吴九",
                                auth=card(j, "bob"))
    t = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    ca_id = j.sql("SELECT id FROM cas WHERE name='root'")[0][0]
    j.sql("INSERT INTO certificates (ca_id, serial, status, subject_text, subject_der, sans, not_before, not_after, "
          "profile, is_ca, created_at, updated_at, requester) VALUES (:c, 'abcdef0123456789', 'pending', '', :d, "
          "'[]', :t, :t, 'enterprise-sign', false, :t, :t, :r)", c=ca_id, d=b"", t=t, r=f"application {app['id']}")
    j.sql("UPDATE applications SET status='enrolled', claimed_at=:t WHERE id=:i", t=t, i=app["id"])
    der, _ = csr_der()
    with pytest.raises(ra.EnrollmentRefused, match="in progress"):
        ra.enroll(store, app["id"], app["code"], der, issuer=issuer, client="c")
    j.sql("UPDATE certificates SET status='failed' WHERE serial='abcdef0123456789'")  # what recover does
    issued = ra.enroll(store, app["id"], app["code"], der, issuer=issuer, client="c")
    assert ra.get_application(store, app["id"])["certificate_serial"] == issued.serial_hex
    assert _audits(store, "enrollment.claim_released")[-1].target == app["id"]
    certs = _count(store, m.Certificate)
    # completed: the same code and key again (an answer lost on the way) get the same certificate;
    # another key is refused
    replayed = ra.enroll(store, app["id"], app["code"], der, issuer=issuer, client="c")
    assert (replayed.serial_hex, replayed.der) == (issued.serial_hex, issued.der)
    with pytest.raises(ra.EnrollmentRefused) as e:
        ra.enroll(store, app["id"], app["code"], csr_der()[0], issuer=issuer, client="c")
    assert e.value.slug == "code-used"
    # stored but not linked (killed between the two): the next use links it, and the same key gets it
    j.sql("UPDATE applications SET certificate_id=NULL, claimed_at=:t WHERE id=:i", t=t, i=app["id"])
    again = ra.enroll(store, app["id"], app["code"], der, issuer=issuer, client="c")
    assert (again.serial_hex, again.der) == (issued.serial_hex, issued.der)
    assert ra.get_application(store, app["id"])["certificate_serial"] == issued.serial_hex
    assert _audits(store, "enrollment.replayed")[-1].target == app["id"]
    with pytest.raises(ra.EnrollmentRefused) as e:
        ra.enroll(store, app["id"], app["code"], csr_der()[0], issuer=issuer, client="c")
    assert e.value.slug == "code-used"
    assert _count(store, m.Certificate) == certs


def test_reenrollment_keeps_the_identity_and_takes_a_new_key(reg):
    j, store, issuer = reg
    code_e = _enterprise(store, j, name="福州示例有限公司")
    app = ra.create_application(store, uscc=code_e, profile="enterprise-sign", holder="郑十", auth=card(j, "bob"))
    first = ra.enroll(store, app["id"], app["code"], csr_der()[0], issuer=issuer, client="c")
    der, key = csr_der(cn="Someone Else", org="Evil")
    again = ra.reenroll(store, first.der, der, issuer=issuer, client="c")
    old, new = (x509.load_der_x509_certificate(d) for d in (first.der, again.der))
    assert new.subject == old.subject and new.serial_number != old.serial_number
    assert new.public_key().public_numbers() == key.public_key().public_numbers()
    assert {c["serial"] for c in ra.enterprise_certificates(store, code_e)} == {first.serial_hex, again.serial_hex}
    assert [e for e in _audits(store, "certificate.issued") if e.target == again.serial_hex][0].details[
        "approval_request"] == app["id"]
    # an unknown certificate and a revoked one are refused, and change nothing
    j.ok("cert", "revoke", first.serial_hex, "--ca", "root", "--reason", "superseded", who="bob")
    before = _snapshot(store)
    for cert_der, slug in ((first.der, "certificate-revoked"), (j.certs["carol"].read_bytes(), "certificate-unknown")):
        if cert_der.startswith(b"-----"):
            cert_der = x509.load_pem_x509_certificate(cert_der).public_bytes(Encoding.DER)
        with pytest.raises(ra.EnrollmentRefused) as e:
            ra.reenroll(store, cert_der, csr_der()[0], issuer=issuer, client="c")
        assert e.value.slug in (slug, "not-enterprise")
    assert _snapshot(store) == before


def test_revocation_requests(reg):
    """keyCompromise at once (the CRL lists it); superseded waits for an officer of the office;
    another enterprise's certificate, or a revoked requester, is refused."""
    j, store, issuer = reg
    code_e = _enterprise(store, j)
    certs = []
    for holder in ("甲", "乙", "丙"):
        app = ra.create_application(store, uscc=code_e, profile="enterprise-sign", holder=holder, auth=card(j, "bob"))
        certs.append(ra.enroll(store, app["id"], app["code"], csr_der()[0], issuer=issuer, client="c"))
    a, b, c = certs
    done = ra.request_revocation(store, cert_serial=b.serial_hex, ca="root", reason="keyCompromise",
                                 requester_cert_der=a.der, client="mtls a")
    assert (done["status"], done["certificate_status"]) == ("done", "revoked")
    pend = ra.request_revocation(store, cert_serial=c.serial_hex, ca=None, reason="superseded",
                                 requester_cert_der=a.der, client="mtls a")
    assert (pend["status"], pend["certificate_status"]) == ("pending", "valid")
    assert [r["id"] for r in ra.list_revocation_requests(store, office="customs", status="pending")] == [pend["id"]]
    with pytest.raises(ra.RegistryConflict):
        ra.request_revocation(store, cert_serial=c.serial_hex, reason="superseded", requester_cert_der=a.der)
    # another enterprise's certificate; a revoked requester
    other = _enterprise(store, j)
    app = ra.create_application(store, uscc=other, profile="enterprise-sign", holder="丁", auth=card(j, "bob"))
    d = ra.enroll(store, app["id"], app["code"], csr_der()[0], issuer=issuer, client="c")
    before = _snapshot(store)
    with pytest.raises(ra.RegistryRefused) as e:
        ra.request_revocation(store, cert_serial=c.serial_hex, reason="keyCompromise", requester_cert_der=d.der,
                              client="mtls d")
    assert e.value.slug == "not-your-certificate"
    with pytest.raises(ra.RegistryRefused) as e:
        ra.request_revocation(store, cert_serial=c.serial_hex, reason="keyCompromise", requester_cert_der=b.der)
    assert e.value.slug == "requester-invalid"
    assert _snapshot(store) == before
    assert _audits(store, "revocation-request.refused")[-2].details["client"] == "mtls d"
    # an officer of another office may not decide; bob may
    with pytest.raises(NotAuthorized):
        ra.decide_revocation(store, pend["id"], True, "ok", auth=card(j, "alice"))
    out = ra.decide_revocation(store, pend["id"], True, "confirmed by phone", auth=card(j, "bob"))
    assert (out["status"], out["certificate_status"]) == ("done", "revoked")
    assert _audits(store, "certificate.revoked")[-1].details["operator"]["name"] == "bob"
    # the CRL lists both
    crl_file = j.dir / "root.crl"
    j.ok("crl", "generate", "--ca", "root", "--out", str(crl_file), who="bob")
    crl = x509.load_der_x509_crl(crl_file.read_bytes()) if crl_file.read_bytes()[:1] == b"0" else \
        x509.load_pem_x509_crl(crl_file.read_bytes())
    listed = {r.serial_number for r in crl}
    assert {b.serial, c.serial} <= listed and a.serial not in listed


# --- the CLI (a few runs: the commands an RA office types) -------------------------------------


def test_cli_registers_an_enterprise_and_prints_the_application_id_and_code(reg):
    from tests.conftest import assert_one_line_error

    j, store, issuer = reg
    code_e = uscc("91350100MA3C00001")
    p = j.ok("enterprise", "add", "--uscc", code_e, "--name", "命令行测试有限公司", "--office", "customs",
             "--legal-rep", "陈五", who="bob")
    assert f"enterprise {code_e} 命令行测试有限公司 registered in office customs" in p.stdout
    bad = j.run("enterprise", "add", "--uscc", code_e[:17] + ("0" if code_e[17] != "0" else "1"), "--name", "X",
                "--office", "customs", who="bob")
    assert bad.returncode == 2
    assert_one_line_error(bad, "check character")
    p = j.ok("application", "create", "--uscc", code_e, "--profile", "enterprise-sign", "--holder", "张三", who="bob")
    found = re.search(r"^application (a[0-9a-f]{12}): approved \(1 of 1 approvals\)", p.stdout, re.M)
    code = re.search(r"^code: (\S+)$", p.stdout, re.M)
    assert found and code and CODE.match(code.group(1)), p.stdout
    app_id = found.group(1)
    shown = j.ok("application", "show", app_id).stdout + j.ok("enterprise", "show", code_e).stdout
    assert code.group(1) not in shown and app_id in shown
    issued = ra.enroll(store, app_id, code.group(1), csr_der()[0], issuer=issuer, client="cli test")
    assert [(a["id"], a["status"], a["certificate_serial"]) for a in ra.list_applications(store, uscc=code_e)] == [
        (app_id, "enrolled", issued.serial_hex)]
    refused = j.run("application", "create", "--uscc", code_e, "--profile", "enterprise-sign", "--holder", "x",
                    who="alice")  # an admin is no RA officer
    assert refused.returncode == 3
    assert_one_line_error(refused, "needs role ra-officer")
    # a revocation request waiting for the office, decided on the command line
    pend = ra.request_revocation(store, cert_serial=issued.serial_hex, reason="cessationOfOperation",
                                 requester_cert_der=issued.der, client="cli test")
    assert pend["id"] in j.ok("revocation-request", "list", "--status", "pending").stdout
    p = j.ok("revocation-request", "approve", pend["id"], "--reason", "confirmed", who="bob")
    assert f"certificate {issued.serial_hex} of CA root revoked (cessationOfOperation)" in p.stdout
    assert j.sql("SELECT status FROM certificates WHERE serial = :s", s=issued.serial_hex) == [("revoked",)]


# --- dual control (adds carol and the rule: keep these last) ----------------------------------


def _carol_and_the_rule(j):
    if not j.sql("SELECT 1 FROM operators WHERE name='carol'"):
        j.ok("operator", "add", "carol", "--role", "ra-officer", "--office", "customs", "--cert",
             str(j.certs["carol"]), who="alice")
    if not j.sql("SELECT 1 FROM approval_rules WHERE operation='cert.issue:enterprise-sign'"):
        j.ok("approval-rule", "set", "cert.issue:enterprise-sign", "--approvals", "2", who="alice")


def test_dual_control_releases_the_code_on_the_second_officers_approval(reg):
    j, store, issuer = reg
    _carol_and_the_rule(j)
    app = ra.create_application(store, uscc=_enterprise(store, j), profile="enterprise-sign", holder="钱一",
                                auth=card(j, "bob"))
    assert (app["status"], app["approvals"], app["needed"]) == ("submitted", 1, 2) and "code" not in app
    with pytest.raises(ra.EnrollmentRefused) as e:
        ra.enroll(store, app["id"], "0000-0000-0000-0000-0000-0000", csr_der()[0], issuer=issuer, client="c")
    assert e.value.slug == "not-approved"
    with pytest.raises(ra.RegistryConflict, match="another officer"):
        ra.decide_application(store, app["id"], approve=True, reason="again", auth=card(j, "bob"))
    with pytest.raises(NotAuthorized):  # an admin is not an officer of the office
        ra.decide_application(store, app["id"], approve=True, reason="", auth=card(j, "alice"))
    done = ra.decide_application(store, app["id"], approve=True, reason="documents checked", auth=card(j, "carol"))
    assert (done["status"], done["approvals"]) == ("approved", 2) and CODE.match(done["code"])
    issued = ra.enroll(store, app["id"], done["code"], csr_der()[0], issuer=issuer, client="c")
    entry = [e for e in _audits(store, "certificate.issued") if e.target == issued.serial_hex][0]
    assert entry.details["operator"]["name"] == "carol"
    assert sorted(x["name"] for x in entry.details["approvers"]) == ["bob", "carol"]
    # a rejection needs a reason and ends the application
    app2 = ra.create_application(store, uscc=_enterprise(store, j), profile="enterprise-sign", holder="李二",
                                 auth=card(j, "bob"))
    with pytest.raises(InputError, match="reason"):
        ra.decide_application(store, app2["id"], approve=False, reason=" ", auth=card(j, "carol"))
    out = ra.decide_application(store, app2["id"], approve=False, reason="not our customer", auth=card(j, "carol"))
    assert (out["status"], out["reason"]) == ("rejected", "not our customer")
    with pytest.raises(ra.RegistryConflict):
        ra.decide_application(store, app2["id"], approve=True, reason="", auth=card(j, "carol"))


def test_self_service_application_gets_its_code_by_polling_once(reg):
    j, store, issuer = reg
    _carol_and_the_rule(j)
    code_e = uscc("91350200MA2Y00001")
    out = ra.submit_application(store, uscc=code_e, name="自助申请有限公司", office="customs", profile="enterprise-sign",
                                holder="刘三", contact="0592-1234567", client="203.0.113.9")
    assert out["status"] == "submitted" and len(out["status_token"]) >= 43
    token = out["status_token"]
    assert ra.get_enterprise(store, code_e)["name"] == "自助申请有限公司"
    with store.read() as s:
        row = s.get(m.Application, out["id"])
        assert token not in str([getattr(row, c.name) for c in m.Application.__table__.columns])
    assert ra.application_status(store, out["id"], token)["status"] == "submitted"
    with pytest.raises(ra.EnrollmentRefused):
        ra.application_status(store, out["id"], token[:-2] + "AA")
    # a known USCC under another name is refused, and adds nothing
    before = _snapshot(store)
    with pytest.raises(ra.RegistryRefused) as e:
        ra.submit_application(store, uscc=code_e, name="冒名公司", office="customs", profile="enterprise-sign",
                              holder="x", client="203.0.113.10")
    assert e.value.slug == "enterprise-mismatch"
    assert _snapshot(store) == before
    assert _audits(store, "application.refused")[-1].details["client"] == "203.0.113.10"
    first = ra.decide_application(store, out["id"], approve=True, reason="ok", auth=card(j, "bob"))
    assert first["status"] == "submitted"
    second = ra.decide_application(store, out["id"], approve=True, reason="ok", auth=card(j, "carol"))
    assert second["status"] == "approved" and "code" not in second  # the applicant gets it, not the officer
    polled = ra.application_status(store, out["id"], token)
    assert polled["status"] == "approved" and CODE.match(polled["code"])
    assert "code" not in ra.application_status(store, out["id"], token)  # exactly once
    issued = ra.enroll(store, out["id"], polled["code"], csr_der()[0], issuer=issuer, client="203.0.113.9")
    assert ra.application_status(store, out["id"], token)["certificate_serial"] == issued.serial_hex


def test_cli_dual_control_prints_the_code_at_the_second_approval(reg):
    from tests.conftest import assert_one_line_error

    j, store, issuer = reg
    _carol_and_the_rule(j)
    code_e = _enterprise(store, j)
    p = j.ok("application", "create", "--uscc", code_e, "--profile", "enterprise-sign", "--holder", "张三", who="bob")
    app_id = re.search(r"^application (a[0-9a-f]{12}): submitted \(1 of 2 approvals\)", p.stdout, re.M).group(1)
    assert "code:" not in p.stdout
    again = j.run("application", "approve", app_id, who="bob")
    assert again.returncode == 2
    assert_one_line_error(again, "another officer")
    p = j.ok("application", "approve", app_id, "--reason", "documents checked", who="carol")
    code = re.search(r"^code: (\S+)$", p.stdout, re.M).group(1)
    assert ra.enroll(store, app_id, code, csr_der()[0], issuer=issuer, client="cli").serial_hex
    other = ra.create_application(store, uscc=code_e, profile="enterprise-sign", holder="李四", auth=card(j, "bob"))
    assert j.run("application", "reject", other["id"], who="carol").returncode == 2  # --reason is required
    assert "rejected" in j.ok("application", "reject", other["id"], "--reason", "duplicate", who="carol").stdout


def test_a_self_service_registration_holds_no_uscc_until_an_officer_verifies_it(reg):
    """Anybody may apply online for any USCC: the registration that makes is pending until its
    office approves the application, and a rejected one is withdrawn -- the real enterprise
    applies (or is registered by its office) with its own facts and gets the certificate."""
    j, store, issuer = reg
    _carol_and_the_rule(j)
    code_e = uscc("91350200MA2Y00002")
    squat = ra.submit_application(store, uscc=code_e, name="冒名顶替有限公司", office="customs",
                                  profile="enterprise-sign", holder="王五", client="198.51.100.7")
    assert ra.get_enterprise(store, code_e)["status"] == "pending"
    # while the office has not decided, the real enterprise is refused (and nothing is added) ...
    before = _snapshot(store)
    with pytest.raises(ra.RegistryRefused) as e:
        ra.submit_application(store, uscc=code_e, name="真实贸易有限公司", office="customs", profile="enterprise-sign",
                              holder="赵六", client="203.0.113.20")
    assert e.value.slug == "enterprise-mismatch" and _snapshot(store) == before
    # ... and no officer may issue to the unverified registration
    with pytest.raises(ra.RegistryRefused) as e:
        ra.create_application(store, uscc=code_e, profile="enterprise-sign", holder="赵六", auth=card(j, "bob"))
    assert e.value.slug == "enterprise-unverified" and _snapshot(store) == before
    # one officer's rejection ends the squat: the registration is withdrawn
    out = ra.decide_application(store, squat["id"], approve=False, reason="不是该企业", auth=card(j, "bob"))
    assert out["status"] == "rejected"
    assert ra.get_enterprise(store, code_e)["status"] == "withdrawn"
    assert _audits(store, "enterprise.withdrawn")[-1].details["application"] == squat["id"]
    # the real enterprise applies under its own name: the registration is replaced, pending again
    real = ra.submit_application(store, uscc=code_e, name="真实贸易有限公司", office="customs",
                                 profile="enterprise-sign", holder="赵六", client="203.0.113.20")
    ent = ra.get_enterprise(store, code_e)
    assert (ent["name"], ent["status"]) == ("真实贸易有限公司", "pending")
    assert _audits(store, "enterprise.added")[-1].details["replaces"]["name"] == "冒名顶替有限公司"
    # the squatter cannot take it back while that application is open
    with pytest.raises(ra.RegistryRefused):
        ra.submit_application(store, uscc=code_e, name="冒名顶替有限公司", office="customs",
                              profile="enterprise-sign", holder="王五")
    ra.decide_application(store, real["id"], approve=True, reason="营业执照已核验", auth=card(j, "bob"))
    assert ra.get_enterprise(store, code_e)["status"] == "pending"  # 1 of 2 approvals: not verified yet
    ra.decide_application(store, real["id"], approve=True, reason="营业执照已核验", auth=card(j, "carol"))
    assert ra.get_enterprise(store, code_e)["status"] == "active"
    assert _audits(store, "enterprise.verified")[-1].details["application"] == real["id"]
    code = ra.application_status(store, real["id"], real["status_token"])["code"]
    cert = x509.load_der_x509_certificate(ra.enroll(store, real["id"], code, csr_der()[0], issuer=issuer).der)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "真实贸易有限公司"
    # a verified enterprise keeps its facts: another name is refused, and 'enterprise add' finds it registered
    with pytest.raises(ra.RegistryRefused):
        ra.submit_application(store, uscc=code_e, name="冒名顶替有限公司", office="customs",
                              profile="enterprise-sign", holder="王五")
    with pytest.raises(ra.RegistryConflict):
        ra.add_enterprise(store, uscc=code_e, name="冒名顶替有限公司", office="customs", auth=card(j, "bob"))


def test_an_officer_registers_an_enterprise_whose_self_service_registration_was_withdrawn(reg):
    j, store, issuer = reg
    code_e = uscc("91350200MA2Y00003")
    squat = ra.submit_application(store, uscc=code_e, name="冒名顶替有限公司", office="customs",
                                  profile="enterprise-sign", holder="王五")
    with pytest.raises(ra.RegistryConflict):  # pending with an open application
        ra.add_enterprise(store, uscc=code_e, name="真实贸易有限公司", office="customs", auth=card(j, "bob"))
    ra.decide_application(store, squat["id"], approve=False, reason="冒名", auth=card(j, "bob"))
    ent = ra.add_enterprise(store, uscc=code_e, name="真实贸易有限公司", office="customs", legal_rep="钱七",
                            auth=card(j, "bob"))
    assert (ent["name"], ent["status"]) == ("真实贸易有限公司", "active")
    assert _audits(store, "enterprise.added")[-1].details["replaces"]["status"] == "withdrawn"


def test_cli_disables_and_enables_an_enterprise(reg):
    """A disabled enterprise gets no application, enrollment or re-enrollment; its office (or an
    admin) disables and enables it with a reason; refusals are one line, the right exit code,
    and change nothing."""
    from tests.conftest import assert_one_line_error

    j, store, issuer = reg
    code_e = _enterprise(store, j)
    app = ra.create_application(store, uscc=code_e, profile="enterprise-sign", holder="孙八", auth=card(j, "bob"))
    if app["status"] != "approved":  # the dual-control rule of the earlier tests
        _carol_and_the_rule(j)
        app = ra.decide_application(store, app["id"], approve=True, reason="ok", auth=card(j, "carol"))
    current = ra.enroll(store, app["id"], app["code"], csr_der()[0], issuer=issuer)
    p = j.ok("enterprise", "disable", code_e, "--reason", "营业执照吊销", who="bob")
    assert p.stdout.strip().endswith("is disabled")
    entry = _audits(store, "enterprise.disabled")[-1]
    assert (entry.target, entry.details["reason"], entry.details["was"]) == (code_e, "营业执照吊销", "active")
    # refused while disabled, and nothing changes
    before = _snapshot(store)
    with pytest.raises(ra.RegistryRefused) as e:
        ra.create_application(store, uscc=code_e, profile="enterprise-sign", holder="孙八", auth=card(j, "bob"))
    assert e.value.slug == "enterprise-disabled"
    with pytest.raises(ra.RegistryRefused):
        ra.submit_application(store, uscc=code_e, name="示例科技有限公司", office="customs", profile="enterprise-sign",
                              holder="孙八")
    with pytest.raises(ra.EnrollmentRefused) as e:
        ra.reenroll(store, current.der, csr_der()[0], issuer=issuer)
    assert e.value.slug == "enterprise-disabled"
    again = j.run("enterprise", "disable", code_e, "--reason", "again", who="bob")
    assert again.returncode == 2
    assert_one_line_error(again, "disabled already")
    # the reason is required; an unknown USCC is named (the office rule is add_enterprise's: tested above)
    assert j.run("enterprise", "enable", code_e, who="bob").returncode == 2
    unknown = j.run("enterprise", "enable", uscc("91350100M99999994"), "--reason", "x", who="bob")
    assert unknown.returncode != 0 and unknown.returncode != 70
    assert_one_line_error(unknown, "no enterprise")
    assert _snapshot(store) == before
    # enabled again by an admin: re-enrollment works
    assert j.ok("enterprise", "enable", code_e, "--reason", "恢复", who="alice").stdout.strip().endswith("is active")
    assert ra.reenroll(store, current.der, csr_der()[0], issuer=issuer).serial_hex
