"""The registry on PostgreSQL (READ COMMITTED, several connections) in a home without operators:
one code issues one certificate however many enroll with it at once, a released code is handed
out to one status poll only, and a home from before joint operation approves at once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from tests.auth.conftest import fresh_pg_database
from tests.conftest import run_unica
from tests.ra.conftest import csr_der, uscc
from unica import ra
from unica.store import models as m


@pytest.fixture(scope="module")
def legacy(tmp_path_factory, pg_url):
    """A PostgreSQL database with CA root (an encrypted key file) and office customs, no operator."""
    from unica.ca.issuance import IssuingCA
    from unica.store import open_store

    home = tmp_path_factory.mktemp("ra-pg") / "home"
    env = {"UNICA_HOME": str(home), "UNICA_DB": fresh_pg_database(pg_url), "UNICA_PASSPHRASE": "race-test-pass",
           "UNICA_OPERATOR": None}
    for args in (("init",), ("ca", "create-root", "root", "--subject", "C=CN,O=Race Test CA,CN=Race Root",
                             "--key-type", "ec-p256"),
                 ("office", "add", "customs", "--ca", "root", "--profile", "enterprise-sign")):
        p = run_unica(*args, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.delenv(k, raising=False) if v is None else mp.setenv(k, v)
        store = open_store(env["UNICA_DB"])
        yield store, IssuingCA(store, "root")
        store.dispose()


def _race(n, fn):
    start = threading.Barrier(n)
    out: list = [None] * n

    def run(i):
        start.wait()
        try:
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 -- collected and checked by the caller
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_without_operators_an_application_is_approved_at_once_and_one_code_issues_once(legacy):
    store, issuer = legacy
    code_e = uscc("91350100MA2R00001")
    ra.add_enterprise(store, uscc=code_e, name="并发测试有限公司", office="customs")
    app = ra.create_application(store, uscc=code_e, profile="enterprise-sign", holder="张三")
    assert app["status"] == "approved" and app["decisions"] == [] and app["code"]
    csrs = [csr_der()[0] for _ in range(6)]
    results = _race(6, lambda i: ra.enroll(store, app["id"], app["code"], csrs[i], issuer=issuer, client=f"c{i}"))
    issued = [r for r in results if not isinstance(r, Exception)]
    assert len(issued) == 1, results
    assert all(isinstance(r, ra.EnrollmentRefused) and r.slug == "code-used" for r in results if r not in issued)
    with store.read() as s:
        rows = s.execute(select(m.Certificate.serial, m.Certificate.enterprise_id, m.Certificate.office).where(
            m.Certificate.requester == f"application {app['id']}")).all()
        ent_id = s.scalar(select(m.Enterprise.id).where(m.Enterprise.uscc == code_e))
    assert rows == [(issued[0].serial_hex, ent_id, "customs")]


def test_a_released_code_goes_to_one_status_poll(legacy):
    store, _ = legacy
    out = ra.submit_application(store, uscc=uscc("91350100MA2R00002"), name="轮询测试有限公司", office="customs",
                                profile="enterprise-sign", holder="李四", client="203.0.113.1")
    assert ra.decide_application(store, out["id"], approve=True, reason="ok")["status"] == "approved"
    polls = _race(5, lambda i: ra.application_status(store, out["id"], out["status_token"]))
    assert sum(1 for p in polls if "code" in p) == 1, polls
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(m.AuditEntry).where(
            m.AuditEntry.event == "application.code_released", m.AuditEntry.target == out["id"])) == 1
