"""Operators and roles, end to end through the CLI with SoftHSM2 tokens as the cards and the HSM."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import assert_one_line_error


def _audit(j, event):
    rows = j.sql("SELECT actor, details FROM audit_log WHERE event = :e ORDER BY id", e=event)
    return [(a, json.loads(d) if isinstance(d, str) else d) for a, d in rows]


def test_bootstrap_is_the_first_admin_and_audited(enrolled):
    j = enrolled
    # the first operator must be an admin
    p = j.run("operator", "add", "bob", "--role", "ra-officer", "--office", "x", "--cert", str(j.certs["bob"]))
    assert p.returncode in (2, 3)
    assert j.sql("SELECT count(*) FROM operators")[0][0] == 0
    j.ok("operator", "add", "alice", "--role", "admin", "--cert", str(j.certs["alice"]))
    (actor, details), = _audit(j, "operator.bootstrap")
    assert details["new_operator"]["name"] == "alice" and details["roles"] == ["admin"]
    # once an operator exists, adding another needs an authenticated admin
    p = j.run("operator", "add", "bob", "--role", "auditor", "--cert", str(j.certs["bob"]))
    assert p.returncode == 3
    assert_one_line_error(p, "needs an authenticated operator", "--as")
    assert j.sql("SELECT count(*) FROM operators")[0][0] == 1
    refused = _audit(j, "auth.refused")
    assert refused and refused[-1][1]["operation"] == "operator.add"


def test_operator_certificate_must_be_an_operator_profile_certificate_of_this_ca(joint, tmp_path):
    j = joint
    # a certificate under another profile (an enterprise certificate) is no operator certificate
    csr = j.csr("not-an-operator")
    pem = tmp_path / "ent.pem"
    j.ok("cert", "issue", "--ca", "root", "--profile", "enterprise-sign", "--csr", str(csr), "--out", str(pem), who="bob")
    p = j.run("operator", "add", "mallory", "--role", "auditor", "--cert", str(pem), who="alice")
    assert p.returncode == 3
    assert_one_line_error(p, "not 'operator'")
    # a self-signed certificate from elsewhere
    key, crt = tmp_path / "m.key", tmp_path / "m.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-subj", "/CN=Mallory", "-days", "30"],
                   check=True, capture_output=True)
    p = j.run("operator", "add", "mallory", "--role", "admin", "--cert", str(crt), who="alice")
    assert p.returncode == 3
    assert_one_line_error(p, "not issued by a CA of this database")
    assert j.sql("SELECT count(*) FROM operators WHERE name='mallory'")[0][0] == 0


def test_officer_issues_within_office_only(joint):
    j = joint
    csr = j.csr("zhangsan")
    out = j.ok("cert", "issue", "--ca", "root", "--profile", "enterprise-sign", "--csr", str(csr), "--json",
               who="bob").stdout
    serial = json.loads(out)["serial"]
    assert j.sql("SELECT office FROM certificates WHERE serial = :s", s=serial)[0][0] == "customs"
    actor, details = _audit(j, "certificate.issued")[-1]
    assert actor.startswith("bob (operator ")
    bob_serial = j.sql("SELECT serial FROM operators WHERE name='bob'")[0][0]
    assert details["operator"]["serial"] == bob_serial
    assert details["operator"]["subject"] == "CN=Bob,O=Port Joint CA,C=CN"
    before = j.sql("SELECT count(*) FROM certificates")[0][0]
    # a profile the office does not have
    p = j.run("cert", "issue", "--ca", "root", "--profile", "enterprise-auth", "--csr", str(csr), who="bob")
    assert p.returncode == 3
    assert_one_line_error(p, "office customs may not use profile enterprise-auth")
    # an admin is not an RA officer: end-entity certificates are the offices' work
    p = j.run("cert", "issue", "--ca", "root", "--profile", "enterprise-sign", "--csr", str(csr), who="alice")
    assert p.returncode == 3
    assert_one_line_error(p, "not an ra-officer")
    # an operator certificate is an admin's work, not an officer's
    p = j.run("cert", "issue", "--ca", "root", "--profile", "operator", "--csr", str(csr), who="bob")
    assert p.returncode == 3
    assert j.sql("SELECT count(*) FROM certificates")[0][0] == before
    # a card that is nobody's
    p = j.run("cert", "issue", "--ca", "root", "--profile", "enterprise-sign", "--csr", str(csr), who="erin")
    assert p.returncode == 3
    assert_one_line_error(p, "not an operator's")
    assert j.sql("SELECT count(*) FROM certificates")[0][0] == before
    assert len(_audit(j, "auth.refused")) >= 4


def test_roles_nobody_grants_themselves_and_the_last_admin_stays(joint):
    j = joint
    p = j.run("operator", "set", "bob", "--role", "admin", who="bob")
    assert p.returncode == 3  # an officer cannot change roles at all
    p = j.run("operator", "set", "alice", "--role", "admin", "--role", "ra-officer", "--office", "customs",
              who="alice")
    assert p.returncode == 3
    assert_one_line_error(p, "themselves")
    p = j.run("operator", "disable", "alice", who="alice")
    assert p.returncode == 3
    assert_one_line_error(p, "last active admin")
    # with a second admin, the first can be disabled -- and then cannot act any more
    j.ok("operator", "add", "carol", "--role", "admin", "--cert", str(j.certs["carol"]), who="alice")
    j.ok("operator", "disable", "alice", who="carol")
    p = j.run("office", "add", "port", "--ca", "root", "--profile", "enterprise-sign", who="alice")
    assert p.returncode == 3
    assert_one_line_error(p, "disabled")
    rows = {r["name"]: r for r in json.loads(j.ok("operator", "list", "--json").stdout)}
    assert rows["alice"]["status"] == "disabled" and rows["carol"]["roles"] == ["admin"]


def test_revoked_operator_certificate_in_the_database_ends_authority(joint):
    j = joint
    # the operator's certificate row moved past its end (SQL: the card and key stay the same)
    j.sql("UPDATE certificates SET status='revoked' WHERE serial = (SELECT serial FROM operators WHERE name='bob')")
    p = j.run("cert", "issue", "--ca", "root", "--profile", "enterprise-sign", "--csr", str(j.csr("x")), who="bob")
    assert p.returncode == 3
    assert_one_line_error(p, "revoked")
    lst = {r["name"]: r for r in json.loads(j.ok("operator", "list", "--json").stdout)}
    assert "revoked" in lst["bob"]["certificate"]


def test_office_listing_and_show(joint):
    j = joint
    rows = json.loads(j.ok("office", "list", "--json").stdout)
    assert rows == [{"name": "customs", "cas": ["root"], "profiles": ["enterprise-sign"], "officers": ["bob"],
                     "created_at": rows[0]["created_at"]}]
    out = j.ok("office", "show", "customs").stdout
    assert "bob" in out and "enterprise-sign" in out
    p = j.run("office", "add", "bad", "--ca", "nope", "--profile", "enterprise-sign", who="alice")
    assert p.returncode == 2
    assert_one_line_error(p, "no CA 'nope'")


def test_init_over_a_database_with_operators_is_an_admins(joint):
    j = joint
    p = j.run("init")
    assert p.returncode == 3
    assert_one_line_error(p, "needs an authenticated operator")
    p = j.run("init", who="bob")
    assert p.returncode == 3
    j.ok("init", who="alice")
    (actor, _), = _audit(j, "home.initialised")[-1:]
    assert actor.startswith("alice (operator ")
