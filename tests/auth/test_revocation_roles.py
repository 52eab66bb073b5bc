"""Joint operation on the revocation side (issue #12, "Roles and scope"): revoke, hold, release,
CRLs, OCSP settings, recovery and the audit log under the operator check, end to end with the
real ``unica`` binary, SoftHSM2 tokens as the CA's HSM and as the operators' cards.

The ``joint`` fixture: CA ``root``; alice admin; office ``customs`` with bob its ra-officer;
carol, dave and erin hold enrolled operator cards (not operators until added here).
"""

from __future__ import annotations

import json

import pytest

from tests.auth.conftest import JointCA


def _issue(j: JointCA, who: str, cn: str) -> str:
    """A certificate issued by ``who`` (an ra-officer): it records their office. Its serial."""
    j.ok("cert", "issue", "--ca", "root", "--profile", "enterprise-sign", "--csr", str(j.csr(cn)),
         "--out", str(j.dir / f"{cn}.pem"), who=who)
    return j.sql("SELECT serial FROM certificates WHERE subject_text LIKE :cn ORDER BY id DESC LIMIT 1",
                 cn=f"%CN={cn}%")[0][0]


def _status(j: JointCA, serial: str) -> str:
    return j.sql("SELECT status FROM certificates WHERE serial = :s", s=serial)[0][0]


def _operator_serial(j: JointCA, who: str) -> str:
    return j.sql("SELECT serial FROM certificates WHERE profile = 'operator' AND subject_text LIKE :cn",
                 cn=f"%CN={who.title()}%")[0][0]


def _entries(j: JointCA, event: str) -> list[tuple[str, dict]]:
    rows = j.sql("SELECT actor, details FROM audit_log WHERE event = :e ORDER BY id", e=event)
    return [(a, d if isinstance(d, dict) else json.loads(d)) for a, d in rows]


def _snapshot(j: JointCA):
    """The certificates and CRLs as they are (what a refusal must leave unchanged)."""
    return (j.sql("SELECT serial, status, revoked_at, revocation_reason FROM certificates ORDER BY id"),
            j.sql("SELECT number FROM crls ORDER BY id"), j.sql("SELECT crl_number FROM cas ORDER BY id"))


def _refused(p, *needles: str) -> None:
    assert p.returncode == 3, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unica: error: "), p.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def _second_office(j: JointCA) -> None:
    """Office ``ports`` (root, enterprise-sign) with carol as its ra-officer; dave an auditor."""
    j.ok("office", "add", "ports", "--ca", "root", "--profile", "enterprise-sign", who="alice")
    j.ok("operator", "add", "carol", "--role", "ra-officer", "--office", "ports", "--cert", str(j.certs["carol"]),
         who="alice")
    j.ok("operator", "add", "dave", "--role", "auditor", "--cert", str(j.certs["dave"]), who="alice")


def test_an_officer_revokes_holds_and_releases_their_offices_certificates_and_no_one_else_can(joint):
    j = joint
    _second_office(j)
    serial = _issue(j, "bob", "zhangsan")
    assert j.sql("SELECT office FROM certificates WHERE serial = :s", s=serial)[0][0] == "customs"
    bob_serial = _operator_serial(j, "bob")

    # bob, customs' officer: hold, release, revoke -- each audited under his name, not the OS user's
    j.ok("cert", "hold", serial, "--ca", "root", who="bob")
    assert _status(j, serial) == "hold"
    j.ok("cert", "release", serial, "--ca", "root", who="bob")
    assert _status(j, serial) == "valid"
    for event in ("certificate.held", "certificate.released"):
        (actor, details), = _entries(j, event)
        assert actor == f"bob (operator {bob_serial})"
        assert details["operator"]["serial"] == bob_serial and "CN=Bob" in details["operator"]["subject"]

    # refused, exit 3, one line, audited, the database unchanged: carol (another office), dave
    # (an auditor), alice (an admin: end-entity certificates are the offices'), and no --as at all
    before = _snapshot(j)
    refusals = len(j.sql("SELECT id FROM audit_log WHERE event = 'auth.refused'"))
    _refused(j.run("cert", "revoke", serial, "--ca", "root", "--reason", "keyCompromise", who="carol"),
             "carol", "office ports", "office customs")
    _refused(j.run("cert", "hold", serial, "--ca", "root", who="carol"), "office customs")
    _refused(j.run("cert", "revoke", serial, "--ca", "root", who="dave"), "dave is not an ra-officer")
    _refused(j.run("cert", "revoke", serial, "--ca", "root", who="alice"), "alice is not an ra-officer")
    _refused(j.run("cert", "revoke", serial, "--ca", "root"), "needs an authenticated operator", "--as")
    _refused(j.run("revoke", serial, "--ca", "root"), "needs an authenticated operator")  # the alias too
    assert _snapshot(j) == before
    refused = _entries(j, "auth.refused")[refusals:]
    assert len(refused) == 6
    assert [d["operation"] for _, d in refused] == ["cert.revoke", "cert.hold"] + ["cert.revoke"] * 4
    assert refused[0][1]["operator"]["name"] == "carol"

    j.ok("cert", "revoke", serial, "--ca", "root", "--reason", "keyCompromise", who="bob")
    assert _status(j, serial) == "revoked"
    (actor, details), = _entries(j, "certificate.revoked")
    assert actor == f"bob (operator {bob_serial})" and details["reason"] == "keyCompromise"

    # carol revokes a certificate of her own office
    other = _issue(j, "carol", "lisi")
    j.ok("cert", "revoke", other, "--ca", "root", who="carol")
    assert _status(j, other) == "revoked"


def test_operator_certificates_are_revoked_by_an_admin_only_and_that_ends_the_operators_authority(joint):
    j = joint
    _second_office(j)
    bob_cert, erin_cert = _operator_serial(j, "bob"), _operator_serial(j, "erin")
    before = _snapshot(j)
    _refused(j.run("cert", "revoke", erin_cert, "--ca", "root", who="bob"), "no RA office", "admin")
    _refused(j.run("cert", "hold", bob_cert, "--ca", "root", who="carol"), "no RA office")
    _refused(j.run("cert", "revoke", bob_cert, "--ca", "root", who="dave"))
    assert _snapshot(j) == before

    (j.dir / "crl").mkdir()
    serial = _issue(j, "bob", "wangwu")  # bob can act ...
    j.ok("cert", "revoke", bob_cert, "--ca", "root", "--reason", "privilegeWithdrawn", who="alice")
    assert _status(j, bob_cert) == "revoked"
    # ... and from now on he cannot: his next command is refused, whatever it is
    _refused(j.run("cert", "hold", serial, "--ca", "root", who="bob"), "bob", "revoked")
    _refused(j.run("crl", "generate", "--ca", "root", "--out-dir", str(j.dir / "crl"), who="bob"), "revoked")
    assert _status(j, serial) == "valid"

    # an admin holds and releases a CA-level certificate
    j.ok("cert", "hold", erin_cert, "--ca", "root", who="alice")
    j.ok("cert", "release", erin_cert, "--ca", "root", who="alice")
    assert _status(j, erin_cert) == "valid"


def test_bulk_revocation_refuses_the_other_offices_certificates_one_by_one(joint):
    j = joint
    _second_office(j)
    mine = [_issue(j, "bob", f"customs-{i}") for i in range(3)]
    theirs = _issue(j, "carol", "ports-1")
    operator = _operator_serial(j, "erin")
    listing = j.dir / "serials.txt"
    listing.write_text("\n".join([mine[0], theirs, mine[1], operator, mine[2]]) + "\n")

    p = j.run("cert", "revoke", "--serials-file", str(listing), "--ca", "root", "--reason", "superseded",
              "--batch-size", "2", "--json", who="bob")
    assert p.returncode == 3, p.stderr
    res = json.loads(p.stdout)
    assert sorted(r["serial"] for r in res["revoked"]) == sorted(mine)
    assert {r["serial"]: r["code"] for r in res["refused"]} == {theirs: "other-office", operator: "other-office"}
    assert [_status(j, s) for s in mine] == ["revoked"] * 3
    assert _status(j, theirs) == "valid" and _status(j, operator) == "valid"
    assert len(p.stderr.strip().splitlines()) == 1 and "2 of 5 refused" in p.stderr
    refused = [d for _, d in _entries(j, "auth.refused") if d.get("code") == "other-office"]
    assert sorted(s for d in refused for s in d["serials"]) == sorted([theirs, operator])
    assert all(d["operator"]["name"] == "bob" for d in refused)
    batch_actors = {a for a, _ in _entries(j, "certificate.revoked_batch")}
    assert batch_actors == {f"bob (operator {_operator_serial(j, 'bob')})"}

    # by key: carol's certificate shares no key with customs'; an auditor may not revoke at all
    spki = j.sql("SELECT spki_sha256 FROM certificates WHERE serial = :s", s=theirs)[0][0]
    before = _snapshot(j)
    p = j.run("cert", "revoke", "--spki-sha256", spki, "--reason", "keyCompromise", "--json", who="bob")
    assert p.returncode == 3 and json.loads(p.stdout)["refused"][0]["code"] == "other-office"
    _refused(j.run("cert", "revoke", "--spki-sha256", spki, who="dave"), "dave")
    _refused(j.run("cert", "revoke", "--serials-file", str(listing), "--ca", "root"), "authenticated operator")
    assert _snapshot(j) == before
    j.ok("cert", "revoke", "--spki-sha256", spki, "--reason", "keyCompromise", who="carol")
    assert _status(j, theirs) == "revoked"


def test_crl_ocsp_and_recovery_by_their_roles(joint):
    j = joint
    _second_office(j)
    out = j.dir / "crl"
    out.mkdir()
    before = _snapshot(j)
    _refused(j.run("crl", "generate", "--ca", "root", "--out-dir", str(out), who="dave"),
             "dave may not crl.generate", "admin or ra-officer")
    _refused(j.run("crl", "generate", "--ca", "root", "--out-dir", str(out)), "authenticated operator")
    assert _snapshot(j) == before and not list(out.iterdir())
    j.ok("crl", "generate", "--ca", "root", "--out-dir", str(out), who="alice")
    j.ok("crl", "generate", "--ca", "root", "--out-dir", str(out), who="bob")
    numbers = [d for a, d in _entries(j, "crl.generated")]
    assert len(numbers) == 2
    assert [a.split(" ")[0] for a, _ in _entries(j, "crl.generated")] == ["alice", "bob"]

    # OCSP settings and the signer: an admin's
    _refused(j.run("ocsp", "configure", "--ca", "root", "--mode", "live", who="bob"), "bob may not ocsp.configure")
    _refused(j.run("ocsp", "signer", "--ca", "root", who="bob"), "bob may not ocsp.signer")
    assert j.sql("SELECT ocsp_mode, ocsp_signer_cert_id FROM cas WHERE name = 'root'")[0][1] is None
    j.ok("ocsp", "configure", "--ca", "root", "--mode", "presigned", "--validity", "4d", who="alice")
    j.ok("ocsp", "signer", "--ca", "root", "--token", j.hsm, who="alice")
    signer = j.sql("SELECT c.profile, c.office FROM certificates c JOIN cas a ON a.ocsp_signer_cert_id = c.id")
    assert signer == [("ocsp-signer", None)]
    # renew-if-due when not due changes nothing: no card needed
    p = j.ok("ocsp", "signer", "--ca", "root", "--token", j.hsm, "--renew-if-due")
    assert "not due" in p.stdout
    # pre-signing: an admin or an officer, not an auditor
    _refused(j.run("ocsp", "presign", "--ca", "root", who="dave"), "dave may not ocsp.presign")
    _refused(j.run("ocsp", "presign", "--ca", "root"), "authenticated operator")
    p = j.ok("ocsp", "presign", "--ca", "root", "--json", who="bob")
    assert json.loads(p.stdout)[0]["signed"] > 0

    # recover: an admin's
    _refused(j.run("recover", who="bob"), "bob may not recover")
    _refused(j.run("recover"), "authenticated operator")
    j.ok("recover", who="alice")


def test_audit_seal_by_an_auditor_and_details_for_auditors_and_admins(joint):
    j = joint
    _second_office(j)
    audit_key = j.card("dave")  # the auditor's card key serves as the audit key here
    _refused(j.run("audit", "seal", "--key", audit_key, who="bob"), "bob may not audit.seal", "admin or auditor")
    _refused(j.run("audit", "seal", "--key", audit_key), "authenticated operator")
    assert j.sql("SELECT count(*) FROM audit_seals")[0][0] == 0
    p = j.ok("audit", "seal", "--key", audit_key, who="dave")
    assert "sealed the audit log" in p.stdout
    (actor, details), = _entries(j, "audit.sealed")
    assert actor.startswith("dave (operator ") and details["operator"]["name"] == "dave"

    # without an auditor or admin: no details (said once on stderr), the rest as before
    p = j.ok("audit", "show", "--json")
    shown = json.loads(p.stdout)
    assert shown and all("details" not in e for e in shown) and {"event", "hash", "actor"} <= set(shown[0])
    assert p.stderr.count("details are for auditors and admins") == 1
    p = j.ok("audit", "show", "--event", "operator.*")
    assert "details are for auditors" in p.stderr and "serial" not in p.stdout
    # an officer's card does not open them: refused, exit 3
    _refused(j.run("audit", "show", who="bob"), "bob may not audit.read")
    for who in ("dave", "alice"):
        p = j.ok("audit", "show", "--json", who=who)
        shown = json.loads(p.stdout)
        assert p.stderr == "" and any(e.get("details", {}).get("operator") for e in shown)
    # verify stays open to everyone
    assert j.run("audit", "verify").returncode == 0


def test_the_library_checks_the_operator_too(tmp_path, monkeypatch):
    """Library calls, not only the CLI: no auth once operators exist is refused; the card works."""
    from tests.auth.conftest import bootstrap, build_joint_ca
    from tests.conftest import TEST_PIN
    from unica.auth import OperatorSigner
    from unica.ca.auditlog import entries
    from unica.ca.revocation import generate_crl, release, revoke, revoke_many
    from unica.errors import NotAuthorized
    from unica.store import open_store

    # the cards are used in this process: in the run's token directory (see tests/auth/test_library.py)
    j = bootstrap(build_joint_ca(tmp_path, cards=("alice", "bob", "erin"), own_tokens=False))
    for k, v in j.env.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    serial = _issue(j, "bob", "zhaoliu")
    store = open_store(j.db_url())
    bob = OperatorSigner(j.card("bob"), pin=lambda: TEST_PIN)
    alice = OperatorSigner(j.card("alice"), pin=lambda: TEST_PIN)
    try:
        with pytest.raises(NotAuthorized):
            revoke(store, serial, ca="root")
        with pytest.raises(NotAuthorized):
            revoke(store, serial, ca="root", auth=alice)
        with pytest.raises(NotAuthorized):
            generate_crl(store, "root", out_dir=j.dir / "crl")
        assert revoke(store, serial, ca="root", reason="certificateHold", auth=bob).status == "hold"
        assert release(store, serial, ca="root", auth=bob).status == "valid"
        res = revoke_many(store, [serial, _operator_serial(j, "erin")], ca="root", auth=bob)
        assert [s for _, s, _ in res.revoked] == [serial] and [r.code for r in res.refused] == ["other-office"]
        rows, full = entries(store, tail=3)
        assert not full and all(e.details is None for e in rows)
        rows, full = entries(store, tail=3, auth=alice)
        assert full and all(e.details is not None for e in rows)
    finally:
        store.dispose()
