"""The audit log: intact logs verify; every kind of tampering is found and named."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from unica.hsm import generate_key, sign_raw
from unica.store import open_store
from unica.store.audit import seal_audit, verify_audit


@pytest.fixture
def sealed_db(tmp_path):
    """A database with 12 audit entries, sealed after the 10th (the seal event is entry 11)."""
    url = f"sqlite:///{tmp_path}/audit.db"
    store = open_store(url, create=True)
    for i in range(10):
        with store.write() as s:
            store.audit(s, "certificate.issued", ca="sub", target=f"{i:032x}", details={"profile": "enterprise-sign"})
    key = generate_key(f"file:{tmp_path}/audit-key.pem", "ec-p256", passphrase="audit pw")
    assert seal_audit(store, lambda m: sign_raw(key, m), key.public_key(), "file:audit-key.pem").upto_id == 11
    with store.write() as s:
        store.audit(s, "certificate.revoked", ca="sub", target=f"{3:032x}", details={"reason": "keyCompromise"})
    store.dispose()
    return tmp_path / "audit.db"


def _verify(unica, db_path):
    r = unica("audit", "verify", "--db", f"sqlite:///{db_path}", "--json")
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None


def _tamper(db_path, *statements):
    con = sqlite3.connect(db_path)
    for st in statements:
        con.execute(st)
    con.commit()
    con.close()


def _copy(sealed_db, tmp_path, name):
    dst = tmp_path / f"{name}.db"
    shutil.copy(sealed_db, dst)
    return dst


def test_intact_log_verifies(unica, sealed_db):
    rc, report = _verify(unica, sealed_db)
    assert rc == 0 and report["ok"] and report["entries"] == 12 and report["last_sealed_id"] == 11


@pytest.mark.parametrize("name, statements, entry, kind", [
    ("edited", ["UPDATE audit_log SET details='{\"profile\": \"root-ca\"}' WHERE id=5"], 5, "edited"),
    ("edited-after-seal", ["UPDATE audit_log SET target='00' WHERE id=12"], 12, "edited"),
    ("deleted", ["DELETE FROM audit_log WHERE id=6"], 6, "missing"),
    ("inserted-middle", [
        # shift entries 8.. up by one and slip a forged entry in at 8
        "UPDATE audit_log SET id = id + 100 WHERE id >= 8",
        "UPDATE audit_log SET id = id - 99 WHERE id >= 108",
        "INSERT INTO audit_log (id, at, event, actor, ca_name, target, details, prev_hash, hash) "
        "SELECT 8, at, 'certificate.issued', actor, ca_name, 'forged', details, hash, hash FROM audit_log WHERE id=7",
        "UPDATE audit_head SET last_id = 13"], 8, None),
    ("inserted-end", [
        "INSERT INTO audit_log (id, at, event, actor, ca_name, target, details, prev_hash, hash) "
        "SELECT 13, at, 'certificate.issued', actor, ca_name, 'forged', details, hash, hash FROM audit_log WHERE id=12"],
     13, None),
    ("swapped", [
        "UPDATE audit_log SET id = -4 WHERE id = 4", "UPDATE audit_log SET id = 4 WHERE id = 3",
        "UPDATE audit_log SET id = 3 WHERE id = -4"], 3, None),
    ("truncated-tail", ["DELETE FROM audit_log WHERE id = 12"], 12, "truncated"),
    ("sealed-part-rewritten", [
        # rewrite entry 2 *and* its stored hash and every later link: only the seal catches it
        "UPDATE audit_log SET target='rewritten' WHERE id=2"], 2, "edited"),
    # the first hex digit changed whatever it is (replacing it by 'f' changed nothing 1 time in 16)
    ("bad-seal", ["UPDATE audit_seals SET upto_hash = (CASE WHEN substr(upto_hash, 1, 1) = '0' THEN '1' ELSE '0' END)"
                  " || substr(upto_hash, 2)"], 11,
     "bad-seal"),
])
def test_tampering_is_found_and_named(unica, sealed_db, tmp_path, name, statements, entry, kind):
    db = _copy(sealed_db, tmp_path, name)
    _tamper(db, *statements)
    rc, report = _verify(unica, db)
    assert rc == 4, report
    assert not report["ok"]
    found = [p for p in report["problems"] if p["entry"] == entry]
    assert found, report["problems"]
    if kind is not None:
        assert kind in [p["kind"] for p in found], report["problems"]
    # the human form names the entry too
    text = unica("audit", "verify", "--db", f"sqlite:///{db}").stdout
    assert f"TAMPERED entry {entry}:" in text


def test_rehashed_chain_is_caught_by_the_seal(sealed_db, tmp_path):
    """An attacker who edits entry 2 and recomputes every hash after it still breaks the seal."""
    from unica.store import audit_entry_hash
    from unica.store import models as m
    from sqlalchemy import select

    db = _copy(sealed_db, tmp_path, "rehashed")
    store = open_store(f"sqlite:///{db}")
    with store.write() as s:
        entries = s.scalars(select(m.AuditEntry).order_by(m.AuditEntry.id)).all()
        entries[1].target = "rewritten"
        prev = entries[0].hash
        for e in entries[1:]:
            e.prev_hash = prev
            e.hash = audit_entry_hash(prev, e.id, e.at, e.event, e.actor, e.ca_name, e.target, e.details)
            prev = e.hash
        head = s.get(m.AuditHead, 1)
        head.last_hash = prev
    report = verify_audit(store)
    assert not report.ok
    assert [p.kind for p in report.problems] == ["edited"] and report.problems[0].entry_id == 11
    store.dispose()


def test_seal_pinned_to_audit_key(unica, sealed_db, tmp_path):
    other = generate_key(f"file:{tmp_path}/other.pem", "ec-p256", passphrase="x")
    from cryptography.hazmat.primitives import serialization

    pem = tmp_path / "other.pub"
    pem.write_bytes(other.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    r = unica("audit", "verify", "--db", f"sqlite:///{sealed_db}", "--public-key", str(pem))
    assert r.returncode == 4 and "another key" in r.stdout


def test_cli_events_are_audited_without_secrets(unica, tmp_path):
    home = tmp_path / "home"
    env = {"UNICA_HOME": str(home), "UNICA_PASSPHRASE": "very-secret-passphrase-913", "UNICA_DB": None}
    assert unica("init", env=env).returncode == 0
    r = unica("ca", "create-root", "r", "--subject", "CN=Audit Root,O=Port,C=CN", "--key-type", "ec-p256", env=env)
    assert r.returncode == 0, r.stderr
    r = unica("audit", "seal", "--key", f"file:{home}/keys/r.pem", env=env)
    assert r.returncode == 0, r.stderr
    events = [e["event"] for e in json.loads(unica("audit", "show", "--json", env=env).stdout)]
    assert "ca.created" in events and "audit.sealed" in events
    assert unica("audit", "verify", env=env).returncode == 0
    # nowhere in the home: database, its WAL, config, key files
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name.startswith("unica.db") for p in files)
    for p in files:
        raw = p.read_bytes()
        for secret in (b"very-secret-passphrase-913", b"4826-user", b"9173-so-officer"):
            assert secret not in raw, p
