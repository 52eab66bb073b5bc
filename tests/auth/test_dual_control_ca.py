"""Dual control over the CA side: ca.create, ca.set, ca.revoke and profile.change under
``approval-rule set OP --approvals 2 --role admin``.

Real `unica` processes and SoftHSM2 cards (tests/auth/conftest.py). A command under a rule
prints a pending request id and exits 0 with nothing done; the requester cannot approve their
own request (no operator counts twice); a second admin's approval runs exactly the approved
operation, exactly once (the CA's HSM PIN comes from UNICA_PIN in the approver's environment);
a request whose parameters were altered in the database is refused at execution; an expired
request cannot be approved.
"""

from __future__ import annotations

import json

from tests.auth.conftest import JointCA, pending_id
from tests.auth.test_ca_roles import SUB, add_admin, assert_refused, audit, counts, profile_file


def under_rule(j: JointCA, operation: str) -> None:
    add_admin(j, "carol")
    j.ok("approval-rule", "set", operation, "--approvals", "2", "--role", "admin", who="alice")


def request(j: JointCA, *args) -> str:
    before = counts(j)
    p = j.run(*args, who="alice")
    assert p.returncode == 0, p.stdout + p.stderr
    rid = pending_id(p)
    after = counts(j)
    assert after.pop("approval_requests") == before.pop("approval_requests") + 1
    assert after == before  # nothing done but the request
    return rid


def status(j: JointCA, rid: str) -> dict:
    return json.loads(j.ok("approval", "show", rid, "--json").stdout)


def test_create_sub_waits_for_a_second_admin_and_runs_once(joint_any):
    j = joint_any
    under_rule(j, "ca.create")
    rid = request(j, "ca", "create-sub", "issuing", "--parent", "root", *SUB, "--token", j.hsm,
                  "--crl-url", "http://crl.example.cn/issuing.crl")
    assert j.sql("SELECT count(*) FROM cas WHERE name = 'issuing'") == [(0,)]
    objects = json.loads(j.ok("token", "objects", "--token", j.hsm, "--json").stdout)
    assert not [o for o in objects if o["label"] == "ca-issuing"]  # no key was made either

    before = counts(j)
    assert_refused(j, j.run("approval", "approve", rid, who="alice"), "no operator counts twice")
    assert_refused(j, j.run("approval", "approve", rid, who="bob"), "admin")  # not the rule's role
    assert counts(j) == before and status(j, rid)["status"] == "pending"

    p = j.ok("approval", "approve", rid, who="carol")  # the HSM PIN: UNICA_PIN, in carol's environment
    assert "executed" in p.stdout
    assert j.sql("SELECT status, crl_url FROM cas WHERE name = 'issuing'") == [
        ("active", "http://crl.example.cn/issuing.crl")]
    assert j.sql("SELECT count(*) FROM certificates WHERE profile = 'sub-ca'") == [(1,)]
    [(actor, d)] = [(a, d) for a, d in audit(j, "ca.created") if d.get("kind") == "subordinate"]
    assert actor.startswith("alice (operator ") and d["approval_request"] == rid
    assert {a["name"] for a in d["approvers"]} == {"alice", "carol"}
    assert status(j, rid)["status"] == "executed"

    # exactly once: the request is no longer pending, and nothing more is created
    before = counts(j)
    for who in ("carol", "alice"):
        assert_refused(j, j.run("approval", "approve", rid, who=who))
    assert counts(j) == before


def test_ca_set_runs_exactly_the_approved_settings(joint):
    j = joint
    under_rule(j, "ca.set")
    rid = request(j, "ca", "set", "root", "--crl-url", "http://crl.example.cn/root.crl", "--ocsp-url",
                  "http://ocsp.example.cn/")
    assert j.sql("SELECT crl_url, ocsp_url FROM cas WHERE name = 'root'") == [(None, None)]
    assert status(j, rid)["params"] == {"settings": {"crl_url": "http://crl.example.cn/root.crl",
                                                     "ocsp_url": "http://ocsp.example.cn/"}}
    j.ok("approval", "approve", rid, who="carol")
    assert j.sql("SELECT crl_url, ocsp_url, ca_issuers_url, delta_crl_url FROM cas WHERE name = 'root'") == [
        ("http://crl.example.cn/root.crl", "http://ocsp.example.cn/", None, None)]
    actor, d = audit(j, "ca.settings_changed")[-1]
    assert actor.startswith("alice (operator ") and {a["name"] for a in d["approvers"]} == {"alice", "carol"}

    # what runs is what was approved: parameters altered in the database after the request are
    # refused at execution (the digest is computed again), and nothing changes
    rid = request(j, "ca", "set", "root", "--ca-issuers-url", "http://aia.example.cn/root.cer")
    j.sql("UPDATE approval_requests SET params = :p WHERE id = :i",
              p=json.dumps({"settings": {"crl_url": "http://evil.example/root.crl"}}), i=rid)
    p = j.run("approval", "approve", rid, who="carol")
    assert p.returncode == 3, p.stdout + p.stderr
    assert j.sql("SELECT crl_url, ca_issuers_url FROM cas WHERE name = 'root'") == [
        ("http://crl.example.cn/root.crl", None)]
    assert status(j, rid)["status"] == "failed"


def test_profile_change_installs_exactly_the_approved_text(joint):
    j = joint
    under_rule(j, "profile.change")
    path, approved = profile_file(j, "customs-sign")
    rid = request(j, "profile", "add", str(path))
    installed = j.home / "profiles" / "customs-sign.toml"
    assert not installed.exists()
    path.write_text(approved.replace("Customs signing", "Changed after the request"), encoding="utf-8")
    j.ok("approval", "approve", rid, who="carol")
    assert installed.read_text(encoding="utf-8") == approved
    actor, d = audit(j, "profile.added")[-1]
    assert actor.startswith("alice (operator ") and d["approval_request"] == rid

    # a removal under the rule: pending, then done by the approval
    rid = request(j, "profile", "remove", "customs-sign")
    assert installed.exists()
    j.ok("approval", "approve", rid, who="carol")
    assert not installed.exists()


def test_ca_revoke_under_a_rule(joint):
    j = joint
    j.ok("ca", "create-sub", "issuing", "--parent", "root", *SUB, "--token", j.hsm, who="alice")
    under_rule(j, "ca.revoke")
    rid = request(j, "ca", "revoke", "issuing", "--reason", "keyCompromise")
    assert j.sql("SELECT status FROM cas WHERE name = 'issuing'") == [("active",)]
    j.ok("approval", "approve", rid, who="carol")
    assert j.sql("SELECT status FROM cas WHERE name = 'issuing'") == [("revoked",)]
    assert j.sql("SELECT status, revocation_reason FROM certificates WHERE profile = 'sub-ca'") == [
        ("revoked", "keyCompromise")]


def test_an_expired_request_cannot_be_approved(joint):
    """Expiry is simulated by moving the request's expires_at back to its created_at in the
    database (the default lifetime is 24 h)."""
    j = joint
    under_rule(j, "ca.create")
    rid = request(j, "ca", "create-root", "root2", "--subject", "C=CN,O=Port Joint CA,CN=Port Root 2",
                  "--key-type", "ec-p256", "--token", j.hsm)
    j.sql("UPDATE approval_requests SET expires_at = created_at WHERE id = :i", i=rid)
    assert status(j, rid)["status"] == "expired"
    before = counts(j)
    assert_refused(j, j.run("approval", "approve", rid, who="carol"), "expired")
    assert counts(j) == before
    assert j.sql("SELECT count(*) FROM cas WHERE name = 'root2'") == [(0,)]


def test_operations_carry_no_secret_and_rebuild_to_the_same_digest():
    """Library: what a request stores is enough to run it again (the executor's rebuilt operation
    has the approved digest), and holds no PIN; every CA-side rule operation has an executor."""
    import dataclasses

    from unica.auth.operation import RULE_OPERATIONS
    from unica.ca.approvals import EXECUTORS
    from unica.ca.authority import (CASettings, KeySpec, create_operation, key_from_params, set_operation,
                                    settings_from_params)
    from unica.ca.profiles import change_operation

    key = KeySpec(key_type="ec-p256", token="hsm", pin="s3cret-PIN", backup_allowed=True)
    settings = CASettings(crl_url="http://crl.example.cn/i.crl", profiles=("enterprise-sign",), ca_issuers_url="")
    for kind, extra in (("root", {}), ("sub", {"parent": "root"}), ("external", {"csr_out": "x.csr"})):
        op = create_operation(kind, "issuing", "C=CN,CN=Issuing", key, validity="5y", profile="sub-ca",
                              settings=settings, **extra)
        assert b"s3cret-PIN" not in op.canonical()
        p = op.params
        again = create_operation(kind, "issuing", p["subject"], key_from_params(p["key"], pin="another"),
                                 validity=p.get("validity"), profile=p.get("profile"),
                                 settings=settings_from_params(p["settings"]),
                                 **({"parent": p["parent"]} if kind == "sub" else {}),
                                 **({"csr_out": p["csr_out"]} if kind == "external" else {}))
        assert again.digest() == op.digest()
    assert key_from_params(create_operation("root", "r", "CN=R", key).params["key"]) == dataclasses.replace(
        key, pin=None)
    op = set_operation("issuing", settings, "pkcs11:token=hsm2;object=ca-issuing")
    assert set_operation("issuing", settings_from_params(op.params["settings"]),
                         op.params["key_uri"]).digest() == op.digest()
    assert set_operation("issuing", CASettings(), "pkcs11:token=t;object=o").params == {
        "key_uri": "pkcs11:token=t;object=o"}  # the form unica.ca.keybackup.set_key_params gives
    assert change_operation("add", "p", text="x = 1\n").params == {"action": "add", "name": "p", "text": "x = 1\n"}
    assert {"ca.create", "ca.set", "ca.revoke", "profile.change", "ca.import-cert"} <= set(EXECUTORS)
    assert {"ca.create", "ca.set", "ca.revoke", "profile.change"} <= set(RULE_OPERATIONS)
