"""Issuance, listing and the per-issuer unique serial on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.ca.conftest import PASSPHRASE, count_rows, openssl_csr, openssl_verify
from tests.conftest import assert_one_line_error, run_unica


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    """(db url, env) for a fresh database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'b.db'}"
    else:
        base = request.getfixturevalue("pg_url")
        # one schema per test: a fresh database in the throwaway cluster
        from sqlalchemy import create_engine, text

        dbname = "unica_" + uuid.uuid4().hex[:10]
        eng = create_engine(base, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text(f"CREATE DATABASE {dbname}"))
        eng.dispose()
        url = base.rsplit("/", 1)[0] + "/" + dbname
    env = {"UNICA_HOME": str(tmp_path / "home"), "UNICA_DB": url, "UNICA_PASSPHRASE": PASSPHRASE}
    return url, env


def _ok(env, *args):
    p = run_unica(*args, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def test_issue_and_list(backend, tmp_path):
    url, env = backend
    _ok(env, "init")
    _ok(env, "ca", "create-root", "r", "--subject", "C=CN,O=存储测试,CN=Store Root", "--key-type", "ec-p256")
    _ok(env, "ca", "create-sub", "s", "--parent", "r", "--subject", "C=CN,O=存储测试,CN=Store Sub",
        "--key-type", "ec-p256", "--crl-url", "http://crl.example.cn/s.crl")
    csr = openssl_csr(tmp_path, "/C=CN/O=存储公司/organizationIdentifier=9144030071526726XG/CN=赵六")
    out = tmp_path / "c.pem"
    _ok(env, "issue", "--ca", "s", "--profile", "enterprise-auth", "--csr", str(csr), "--out", str(out))
    (tmp_path / "r.pem").write_text(_ok(env, "ca", "export", "r").stdout)
    (tmp_path / "s.pem").write_text(_ok(env, "ca", "export", "s").stdout)
    assert openssl_verify(tmp_path / "r.pem", tmp_path / "s.pem", out).returncode == 0
    rows = json.loads(_ok(env, "cert", "list", "--ca", "s", "--json").stdout)
    assert len(rows) == 1 and rows[0]["subject"].startswith("CN=赵六") and rows[0]["status"] == "valid"
    assert len(json.loads(_ok(env, "cert", "list", "--json").stdout)) == 3  # root, sub, leaf
    before = count_rows(url, "certificates")
    bad = openssl_csr(tmp_path, "/C=CN/O=存储公司/organizationIdentifier=9144030071526726XA/CN=赵六")
    assert_one_line_error(run_unica("issue", "--ca", "s", "--profile", "enterprise-auth", "--csr", str(bad), env=env),
                          "wrong check character")
    assert count_rows(url, "certificates") == before


def test_serial_unique_per_issuer_and_retried(backend, monkeypatch):
    url, env = backend
    monkeypatch.setenv("UNICA_HOME", env["UNICA_HOME"])
    monkeypatch.setenv("UNICA_PASSPHRASE", PASSPHRASE)
    from sqlalchemy.exc import IntegrityError

    from unica.ca import engine
    from unica.ca.authority import KeySpec, create_root
    from unica.ca.issuance import IssuingCA
    from unica.ca.request import CSRRequest
    from unica.ca.names import parse_dn
    from unica.store import models as m
    from unica.store import open_store

    store = open_store(url, create=True)
    create_root(store, "r", "C=CN,O=Serial,CN=Serial Root", KeySpec(key_type="ec-p256"))
    ca = IssuingCA(store, "r")
    from unica.policies import get_profile

    k = ec.generate_private_key(ec.SECP256R1())
    req = CSRRequest(k.public_key(), "ec-p256", parse_dn("CN=a.example.cn"), (x509.DNSName("a.example.cn"),), ())
    fixed = [0x1234567890ABCDEF1234567890ABCDEF, 0x1234567890ABCDEF1234567890ABCDEF, 0x7777]
    monkeypatch.setattr(engine, "new_serial", lambda: fixed.pop(0))
    first = ca.issue(req, get_profile("tls-server"))
    second = ca.issue(req, get_profile("tls-server"))  # collides once, retried with the next serial
    assert first.serial == 0x1234567890ABCDEF1234567890ABCDEF and second.serial == 0x7777
    assert x509.load_der_x509_certificate(second.der).serial_number == 0x7777
    # the database itself refuses a duplicate (ca, serial)
    with pytest.raises(IntegrityError):
        with store.write() as s:
            s.add(m.Certificate(ca_id=ca.ca_id, serial=first.serial_hex, status="pending", not_before=m.utcnow(),
                                not_after=m.utcnow(), profile="tls-server"))
    with store.read() as s:
        assert s.query(m.Certificate).filter_by(ca_id=ca.ca_id, serial=first.serial_hex).count() == 1
        assert s.query(m.Certificate).filter_by(status="pending").count() == 0
    store.dispose()


def test_issue_many_records_then_signs_and_audits_the_batch(backend, monkeypatch, tmp_path):
    url, env = backend
    monkeypatch.setenv("UNICA_HOME", env["UNICA_HOME"])
    monkeypatch.setenv("UNICA_PASSPHRASE", PASSPHRASE)
    from unica.ca.authority import KeySpec, create_root
    from unica.ca.issuance import Issued, IssuingCA
    from unica.errors import PolicyViolation
    from unica.store import models as m
    from unica.store import open_store

    store = open_store(url, create=True)
    create_root(store, "r", "C=CN,O=Batch,CN=Batch Root", KeySpec(key_type="ec-p256"))
    ca = IssuingCA(store, "r")
    csrs = [openssl_csr(tmp_path, f"/CN=h{i}.example.cn", san=f"DNS:h{i}.example.cn").read_bytes() for i in range(4)]
    csrs.insert(2, openssl_csr(tmp_path, "/CN=small.example.cn", key="rsa:1024", san="DNS:s.example.cn").read_bytes())
    before = count_rows(url, "certificates")
    out = ca.issue_many(csrs, "tls-server", requester="bulk", lint=False)
    assert [type(r) for r in out] == [Issued, Issued, PolicyViolation, Issued, Issued]
    assert count_rows(url, "certificates") == before + 4
    with store.read() as s:
        rows = s.query(m.Certificate).filter_by(requester="bulk").all()
        assert {r.status for r in rows} == {"valid"}
        for r in rows:  # the stored certificate replaced the recorded TBS
            assert r.der and r.tbs_der is None
        entry = s.query(m.AuditEntry).filter_by(event="certificate.issued_batch").one()
        assert entry.details["count"] == 4 and "--no-lint" in entry.details["lint"]
        assert sorted(c[0] for c in entry.details["certificates"]) == sorted(r.serial for r in rows)
    store.dispose()


def test_wrong_ca_key_leaves_a_failed_intent_and_no_certificate(backend, monkeypatch):
    """The intent is recorded before the signature; a signature that does not verify with the
    CA certificate (here: the wrong key configured) marks it failed, audited, with no DER."""
    url, env = backend
    monkeypatch.setenv("UNICA_HOME", env["UNICA_HOME"])
    monkeypatch.setenv("UNICA_PASSPHRASE", PASSPHRASE)
    from unica.ca.authority import KeySpec, create_root
    from unica.ca.issuance import IssuingCA
    from unica.ca.names import parse_dn
    from unica.ca.request import CSRRequest
    from unica.errors import UnsupportedKeyType
    from unica.store import models as m
    from unica.store import open_store

    store = open_store(url, create=True)
    create_root(store, "r", "C=CN,O=Wrong Key,CN=Wrong Key Root", KeySpec(key_type="ec-p256"))
    ca = IssuingCA(store, "r", key=ec.generate_private_key(ec.SECP256R1()))  # not the CA's key
    k = ec.generate_private_key(ec.SECP256R1())
    req = CSRRequest(k.public_key(), "ec-p256", parse_dn("CN=w.example.cn"), (x509.DNSName("w.example.cn"),), ())
    with pytest.raises(UnsupportedKeyType, match="does not verify"):
        ca.issue(req, "tls-server")
    with store.read() as s:
        row = s.query(m.Certificate).filter(m.Certificate.profile == "tls-server").one()
        assert row.status == "failed" and row.der is None and row.tbs_der
        entry = s.query(m.AuditEntry).filter_by(event="certificate.signing_failed").one()
        assert entry.target == row.serial
    store.dispose()


def test_a_certificate_whose_tbs_is_not_the_recorded_intent_is_not_stored(backend, monkeypatch):
    """The store's UPDATE applies only where the row holds exactly the signed TBSCertificate:
    an intent changed after it was recorded leaves the row pending and the certificate discarded."""
    url, env = backend
    monkeypatch.setenv("UNICA_HOME", env["UNICA_HOME"])
    monkeypatch.setenv("UNICA_PASSPHRASE", PASSPHRASE)
    from sqlalchemy import select, update

    from unica.ca import engine
    from unica.ca.authority import KeySpec, create_root
    from unica.ca.issuance import IssuingCA
    from unica.ca.names import parse_dn
    from unica.ca.request import CSRRequest
    from unica.errors import StoreError
    from unica.policies import get_profile
    from unica.store import models as m
    from unica.store import open_store

    store = open_store(url, create=True)
    create_root(store, "r", "C=CN,O=Intent,CN=Intent Root", KeySpec(key_type="ec-p256"))
    ca = IssuingCA(store, "r")
    reqs = [CSRRequest(ec.generate_private_key(ec.SECP256R1()).public_key(), "ec-p256",
                       parse_dn(f"CN=i{i}.example.cn"), (x509.DNSName(f"i{i}.example.cn"),), ()) for i in range(2)]
    prepared = [engine.prepare(ca.issuer, get_profile("tls-server"), r, lint=False) for r in reqs]
    ca._insert_intents(prepared, "t")
    t = m.Certificate.__table__
    with store.write() as s:  # someone rewrites the first intent after it was recorded
        s.execute(update(t).where(t.c.serial == m.serial_hex(prepared[0].serial)).values(tbs_der=b"\x30\x00"))
    signed = [(i, p, engine.sign_prepared(p, ca.key, ca.issuer.public_key)) for i, p in enumerate(prepared)]
    first, second = ca._store_many(signed, "t", False)
    assert isinstance(first, StoreError) and not isinstance(second, StoreError)
    with store.read() as s:
        status = dict(s.execute(select(t.c.serial, t.c.status).where(t.c.requester == "t")).all())
    assert status == {m.serial_hex(prepared[0].serial): "pending", m.serial_hex(prepared[1].serial): "valid"}
    store.dispose()
