"""Dual control (M of N) through the CLI, and forged approvals; SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import os

import pytest

from tests.auth.conftest import pending_id
from tests.conftest import assert_one_line_error


def _issue_request(j, cn="lisi"):
    csr = j.csr(cn)
    p = j.ok("cert", "issue", "--ca", "root", "--profile", "enterprise-sign", "--csr", str(csr), who="bob")
    assert p.stdout.startswith("pending: request r"), p.stdout
    return pending_id(p)


def _officers(j, *names):
    for n in names:
        j.ok("operator", "add", n, "--role", "ra-officer", "--office", "customs", "--cert", str(j.certs[n]),
             who="alice")


def _certs(j) -> int:
    return j.sql("SELECT count(*) FROM certificates WHERE profile = 'enterprise-sign'")[0][0]


def test_rule_makes_issuance_wait_and_the_quorum_runs_it_once(joint_any):
    j = joint_any
    _officers(j, "carol")
    j.ok("approval-rule", "set", "cert.issue:enterprise-sign", "--approvals", "2", who="alice")
    before = _certs(j)
    rid = _issue_request(j)
    assert _certs(j) == before  # nothing issued yet
    listed = json.loads(j.ok("approval", "list", "--status", "pending", "--json").stdout)
    assert [r["id"] for r in listed] == [rid] and listed[0]["approvals"] == "1/2"
    # the requester does not count twice
    p = j.run("approval", "approve", rid, who="bob")
    assert p.returncode == 3
    assert_one_line_error(p, "no operator counts twice")
    assert _certs(j) == before
    out = j.ok("approval", "approve", rid, "--json", who="carol").stdout
    done = json.loads(out)
    assert done["status"] == "executed" and done["result"]["profile"] == "enterprise-sign"
    assert _certs(j) == before + 1
    serial = done["result"]["serial"]
    # the audit entry of the issuance names the requester and every approver
    (details,) = [json.loads(d) if isinstance(d, str) else d
                  for (d,) in j.sql("SELECT details FROM audit_log WHERE event='certificate.issued' AND target=:s",
                                    s=serial)]
    assert details["approval_request"] == rid
    assert [a["name"] for a in details["approvers"]] == ["bob", "carol"]
    # executed once: approving again is refused and issues nothing
    p = j.run("approval", "approve", rid, who="alice")
    assert p.returncode == 3
    assert_one_line_error(p, "no longer pending")
    assert _certs(j) == before + 1
    shown = j.ok("approval", "show", rid).stdout
    assert "executed" in shown and "carol" in shown


def test_reject_and_expiry(joint):
    j = joint
    _officers(j, "carol")
    j.ok("approval-rule", "set", "cert.issue:enterprise-sign", "--approvals", "2", who="alice")
    before = _certs(j)
    rid = _issue_request(j)
    j.ok("approval", "reject", rid, "--reason", "wrong company name", who="carol")
    p = j.run("approval", "approve", rid, who="alice")
    assert p.returncode == 3
    assert_one_line_error(p, "rejected")
    rid2 = _issue_request(j, "wangwu")
    # the request's 24 hours have passed (moved in the database: the clock is not ours to move)
    j.sql("UPDATE approval_requests SET expires_at = created_at WHERE id = :i", i=rid2)
    p = j.run("approval", "approve", rid2, who="carol")
    assert p.returncode == 3
    assert_one_line_error(p, "expired")
    assert _certs(j) == before
    assert json.loads(j.ok("approval", "show", rid2, "--json").stdout)["status"] == "expired"


def test_what_runs_is_exactly_what_was_approved(joint):
    j = joint
    _officers(j, "carol")
    j.ok("approval-rule", "set", "cert.issue:enterprise-sign", "--approvals", "2", who="alice")
    rid = _issue_request(j)
    # someone with database access swaps the request's CSR after it was signed
    other = j.csr("mallory").read_bytes()
    from cryptography import x509
    import base64
    from sqlalchemy import create_engine, text

    der = x509.load_pem_x509_csr(other).public_bytes(__import__("cryptography").hazmat.primitives.serialization.Encoding.DER)
    eng = create_engine(j.db_url())
    with eng.begin() as c:
        params = c.execute(text("SELECT params FROM approval_requests WHERE id=:i"), {"i": rid}).scalar()
        params = json.loads(params) if isinstance(params, str) else params
        params["csr"] = base64.b64encode(der).decode()
        c.execute(text("UPDATE approval_requests SET params=:p WHERE id=:i"), {"p": json.dumps(params), "i": rid})
    eng.dispose()
    before = _certs(j)
    p = j.run("approval", "approve", rid, who="carol")
    assert p.returncode == 3
    assert_one_line_error(p, "differs from what request")
    assert _certs(j) == before
    assert json.loads(j.ok("approval", "show", rid, "--json").stdout)["status"] == "failed"


def test_approval_by_someone_outside_the_rule_role(joint):
    j = joint
    j.ok("operator", "add", "dave", "--role", "auditor", "--cert", str(j.certs["dave"]), who="alice")
    j.ok("approval-rule", "set", "cert.issue:enterprise-sign", "--approvals", "2", "--role", "ra-officer",
         who="alice")
    rid = _issue_request(j)
    p = j.run("approval", "approve", rid, who="dave")
    assert p.returncode == 3
    assert_one_line_error(p, "role ra-officer")
    p = j.run("approval", "approve", rid, who="erin")  # a card that is no operator's
    assert p.returncode == 3
    assert_one_line_error(p, "not an operator's")


def test_changing_rules_is_under_dual_control_once_a_rule_exists(joint):
    j = joint
    j.ok("operator", "add", "carol", "--role", "admin", "--cert", str(j.certs["carol"]), who="alice")
    j.ok("approval-rule", "set", "ca.set", "--approvals", "2", "--role", "admin", who="alice")
    # lowering the rule alone is not possible: it waits for a second admin
    p = j.ok("approval-rule", "set", "ca.set", "--approvals", "1", who="alice")
    rid = pending_id(p)
    assert json.loads(j.ok("approval-rule", "list", "--json").stdout)[0]["approvals"] == 2
    j.ok("approval", "approve", rid, who="carol")
    assert json.loads(j.ok("approval-rule", "list", "--json").stdout) == []


_RACE = r"""
import sys, json
from unica.cli.main import main
sys.exit(main(["approval", "approve", sys.argv[1], "--json", "--as", sys.argv[2]]))
"""


@pytest.mark.parametrize("needed", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_two_processes_approving_at_once_execute_once(joint_any, needed):
    """Two approvers at the same moment: the request runs exactly once (M=2: one of them meets the
    quorum, the other finds it no longer pending; M=3: both count, the second one runs it)."""
    _race(joint_any, needed, rounds=2)


def test_two_processes_approving_at_once_execute_once_on_postgresql(tmp_path, pg_url):
    """The same race on PostgreSQL (READ COMMITTED, the request row locked FOR UPDATE)."""
    from tests.auth.conftest import bootstrap, build_joint_ca, fresh_pg_database

    _race(bootstrap(build_joint_ca(tmp_path, db=fresh_pg_database(pg_url), cards=("alice", "bob", "carol", "dave"))),
          2, rounds=2)


def _race(j, needed: int, rounds: int) -> None:
    _officers(j, "carol", "dave")
    j.ok("approval-rule", "set", "cert.issue:enterprise-sign", "--approvals", str(needed), who="alice")
    for round_ in range(rounds):
        before = _certs(j)
        rid = _issue_request(j, f"race{round_}")
        env = dict(os.environ)
        env.update({k: v for k, v in j.env.items() if v is not None})
        env.pop("UNICA_OPERATOR", None)
        procs = [subprocess.Popen([sys.executable, "-c", _RACE, rid, j.card(who)], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for who in ("carol", "dave")]
        results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
        codes = sorted(r[0] for r in results)
        assert _certs(j) == before + 1, results
        status = json.loads(j.ok("approval", "show", rid, "--json").stdout)
        assert status["status"] == "executed", status
        issued = j.sql("SELECT count(*) FROM audit_log WHERE event='certificate.issued' AND CAST(details AS TEXT) LIKE :p",
                       p=f"%{rid}%")[0][0]
        assert issued == 1
        if needed == 2:
            assert codes == [0, 3], results
        else:
            assert codes == [0, 0], results


def test_a_revoked_operator_cannot_approve(joint):
    """An operator's revoked certificate ends their authority at once: their approval is refused."""
    j = joint
    _officers(j, "carol")
    j.ok("approval-rule", "set", "cert.issue:enterprise-sign", "--approvals", "2", who="alice")
    rid = _issue_request(j)
    carol_serial = j.sql("SELECT serial FROM operators WHERE name='carol'")[0][0]
    j.ok("cert", "revoke", carol_serial, "--ca", "root", "--reason", "keyCompromise", who="alice")
    before = _certs(j)
    p = j.run("approval", "approve", rid, who="carol")
    assert p.returncode == 3
    assert_one_line_error(p, "revoked")
    assert _certs(j) == before
    assert json.loads(j.ok("approval", "show", rid, "--json").stdout)["status"] == "pending"
